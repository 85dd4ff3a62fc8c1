#include "volwatch/output.hpp"

#include <gtest/gtest.h>

namespace volwatch {
namespace {

TEST(EscapeForTerminal, LeavesPrintableTextAlone) {
    EXPECT_EQ(escape_for_terminal(""), "");
    EXPECT_EQ(escape_for_terminal("usr/lib/modules/6.1.0 x.ko"), "usr/lib/modules/6.1.0 x.ko");
    EXPECT_EQ(escape_for_terminal("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    EXPECT_EQ(escape_for_terminal("back\\slash \"quoted\""), "back\\slash \"quoted\"");
}

TEST(EscapeForTerminal, EscapesControlCharacters) {
    EXPECT_EQ(escape_for_terminal("a\033[2Jb\rc"), "a\\x1b[2Jb\\rc");
    EXPECT_EQ(escape_for_terminal("line\nnext\ttab"), "line\\nnext\\ttab");
    EXPECT_EQ(escape_for_terminal(std::string("nul\0bel\a del\x7f", 13)), "nul\\x00bel\\x07 del\\x7f");
    // C1 controls in UTF-8: U+009B is CSI on some terminals.
    EXPECT_EQ(escape_for_terminal("x\xc2\x9b" "31m"), "x\\u009b31m");
}

TEST(EscapeForTerminal, EscapesBytesThatAreNotUtf8) {
    EXPECT_EQ(escape_for_terminal("bad\xffname"), "bad\\xffname");
    EXPECT_EQ(escape_for_terminal("\xc3"), "\\xc3");                  // truncated sequence
    EXPECT_EQ(escape_for_terminal("\xc0\xaf"), "\\xc0\\xaf");         // overlong '/'
    EXPECT_EQ(escape_for_terminal("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
    EXPECT_EQ(escape_for_terminal("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
    EXPECT_EQ(escape_for_terminal("\xe2\x82x"), "\\xe2\\x82x");
}

}  // namespace
}  // namespace volwatch
