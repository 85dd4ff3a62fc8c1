// vlock: take a volume lock for a script, or run a command under it.
// Its command line is parsed without CLI11 (volwatch/vlock_command_line.hpp):
// vlock runs once per locked command, and CLI11's set-up cost more than the
// lock; for the same reason it prints through stdio, not iostreams (their
// locale set-up ran at every start: volwatch/output.hpp, put).
#include <cstdio>

#include "guarded.hpp"
#include "volwatch/output.hpp"
#include "volwatch/vlock.hpp"
#include "volwatch/vlock_command_line.hpp"

int main(int argc, char** argv) {
    using namespace volwatch;
    auto line = parse_vlock_command_line(argc, argv);
    if (!line) return cli::usage_error("vlock", line.problem().message);
    switch (line->action) {
    case VlockCommandLine::Action::help: put(stdout, vlock_help()); return 0;
    case VlockCommandLine::Action::version: put_line(stdout, vlock_version()); return 0;
    case VlockCommandLine::Action::run: break;
    }
    return cli::run_guarded("vlock", [&] { return run_vlock(line->options, stdout, stderr); });
}
