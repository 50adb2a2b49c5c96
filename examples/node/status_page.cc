#include "app.h"
namespace confman::server {
void App::StatusPage(Call call) { call.ex->Reply(Error(http::status::not_implemented, "internal", "todo")); }
}
