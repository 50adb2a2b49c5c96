#include "app.h"
namespace confman::server {
void App::MembersList(Call call) { call.ex->Reply(Error(http::status::not_implemented, "internal", "todo")); }
void App::MembersAdd(Call call) { call.ex->Reply(Error(http::status::not_implemented, "internal", "todo")); }
void App::MembersPromote(Call call) { call.ex->Reply(Error(http::status::not_implemented, "internal", "todo")); }
void App::MembersRemove(Call call) { call.ex->Reply(Error(http::status::not_implemented, "internal", "todo")); }
void App::LeaderTransfer(Call call) { call.ex->Reply(Error(http::status::not_implemented, "internal", "todo")); }
void App::ClusterStatus(Call call) { call.ex->Reply(Error(http::status::not_implemented, "internal", "todo")); }
void App::ForwardToLeader(const Call&) {}
bool App::ShouldForward(const Call&) { return false; }
}
