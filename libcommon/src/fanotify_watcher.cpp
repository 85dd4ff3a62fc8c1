#include "volwatch/watcher.hpp"

namespace volwatch {

Result<std::unique_ptr<Watcher>> make_fanotify_watcher() {
    return Problem{ExitCode::internal, "the fanotify backend is not available yet"};
}

}  // namespace volwatch
