// placeholder
#include "app.h"
namespace confman::server {
void App::Watch(Call call) { call.ex->Reply(Error(http::status::not_implemented, "internal", "todo")); }
void App::Audit(Call call) { call.ex->Reply(Error(http::status::not_implemented, "internal", "todo")); }
}
