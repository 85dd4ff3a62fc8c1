#include <csignal>
#include <sys/resource.h>
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "test_support.hpp"
#include "volwatch/runner.hpp"

using namespace volwatch;
using namespace std::chrono_literals;
using volwatch::testing::TempDir;

namespace {

struct Captured {
    RunResult result;
    std::string output;
};

Captured run(std::vector<std::string> argv, const std::filesystem::path& cwd, Duration timeout = 10s,
             Duration grace = 5s) {
    TempDir out;
    std::string path = (out.path() / "output").string();
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    RunSpec spec;
    spec.argv = std::move(argv);
    spec.cwd = cwd;
    spec.timeout = timeout;
    spec.kill_grace = grace;
    spec.prefix = "cache: ";
    spec.output_fd = fd;
    auto result = run_command(spec);
    ::close(fd);
    EXPECT_TRUE(result.ok());
    return {result.ok() ? *result : RunResult{}, volwatch::testing::read_file(path)};
}

TEST(Runner, PropagatesTheExitStatus) {
    TempDir dir;
    EXPECT_EQ(run({"true"}, dir.path()).result.status, 0);
    EXPECT_EQ(run({"sh", "-c", "exit 42"}, dir.path()).result.status, 42);
    EXPECT_EQ(run({"sh", "-c", "kill -9 $$"}, dir.path()).result.status, 128 + SIGKILL);
}

TEST(Runner, PrefixesEveryLineOfStdoutAndStderr) {
    TempDir dir;
    auto captured = run({"sh", "-c", "echo one; echo two >&2; printf three"}, dir.path());
    EXPECT_EQ(captured.output, "cache: one\ncache: two\ncache: three\n");
}

TEST(Runner, PassesArgumentsWithoutAShell) {
    TempDir dir;
    auto captured = run({"printf", "%s|", "a b", "$(rm -rf /)", "*"}, dir.path());
    EXPECT_EQ(captured.output, "cache: a b|$(rm -rf /)|*|\n");
}

TEST(Runner, UsesACleanEnvironmentTheVolumeRootAndNoStdin) {
    TempDir dir;
    ::setenv("VOLWATCH_LEAK_TEST", "secret", 1);
    auto captured = run({"sh", "-c", "env | sort; pwd; cat; echo stdin-done"}, dir.path());
    ::unsetenv("VOLWATCH_LEAK_TEST");
    EXPECT_EQ(captured.output.find("VOLWATCH_LEAK_TEST"), std::string::npos) << captured.output;
    EXPECT_NE(captured.output.find("cache: LANG=C.UTF-8\n"), std::string::npos) << captured.output;
    EXPECT_NE(captured.output.find("cache: PATH=/usr/local/sbin:"), std::string::npos);
    EXPECT_NE(captured.output.find("cache: " + std::filesystem::canonical(dir.path()).string() + "\n"), std::string::npos);
    EXPECT_NE(captured.output.find("cache: stdin-done"), std::string::npos);
}

TEST(Runner, MissingCommandIs127) {
    TempDir dir;
    auto captured = run({"volwatch-no-such-command"}, dir.path());
    EXPECT_EQ(captured.result.status, 127);
    EXPECT_FALSE(captured.result.started);
    EXPECT_NE(captured.output.find("command not found"), std::string::npos);
}

TEST(Runner, TimeoutSendsTermToTheWholeGroup) {
    TempDir dir;
    auto marker = dir.path() / "survivor";
    // A background grandchild would outlive a kill of the leader alone.
    auto captured = run({"sh", "-c", "(sleep 3; touch " + marker.string() + ") & sleep 30"}, dir.path(), 300ms, 2s);
    EXPECT_TRUE(captured.result.timed_out);
    EXPECT_EQ(captured.result.status, 128 + SIGTERM);
    EXPECT_LT(captured.result.elapsed, 3s);
    EXPECT_NE(captured.output.find("timed out after 300ms"), std::string::npos);
    ::sleep(4);
    EXPECT_FALSE(std::filesystem::exists(marker)) << "a process of the timed-out group survived";
}

TEST(Runner, TimeoutEscalatesToKill) {
    TempDir dir;
    auto captured = run({"sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"}, dir.path(), 300ms, 300ms);
    EXPECT_TRUE(captured.result.timed_out);
    EXPECT_EQ(captured.result.status, 128 + SIGKILL);
    EXPECT_LT(captured.result.elapsed, 3s);
}

TEST(Runner, LowPriorityIsNicedAndIdleIo) {
    TempDir dir;
    RunSpec spec;
    std::string path = (dir.path() / "out").string();
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    spec.argv = {"sh", "-c", "cut -d' ' -f19 /proc/self/stat; ionice -p $$ 2>/dev/null || echo no-ionice"};
    spec.cwd = dir.path();
    spec.low_priority = true;
    spec.output_fd = fd;
    auto result = run_command(spec);
    ::close(fd);
    ASSERT_TRUE(result.ok());
    std::string output = volwatch::testing::read_file(path);
    int base = ::getpriority(PRIO_PROCESS, 0);
    EXPECT_NE(output.find(std::to_string(std::min(base + 10, 19)) + "\n"), std::string::npos) << output;
    if (output.find("no-ionice") == std::string::npos) {
        EXPECT_NE(output.find("idle"), std::string::npos) << output;
    }
}

}  // namespace
