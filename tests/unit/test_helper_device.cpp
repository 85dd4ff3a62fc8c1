// The [[helpers]] target-spec parser (helper_device.cpp): what is accepted,
// and one distinct message per kind of bad spec.
#include <gtest/gtest.h>

#include <string>

#include "volwatch/config.hpp"
#include "volwatch/helper_device.hpp"

namespace volwatch {
namespace {

std::string problem_of(std::string_view text) {
    auto spec = parse_target_spec(text);
    EXPECT_FALSE(spec.ok()) << text;
    if (spec) return "";
    EXPECT_EQ(spec.problem().code, ExitCode::bad_host_config);
    return spec.problem().message;
}

TEST(HelperTargetSpec, AcceptsDirectoriesTagsAndDevicePaths) {
    auto dir = parse_target_spec("/boot/efi");
    ASSERT_TRUE(dir.ok());
    EXPECT_EQ(dir->kind, TargetKind::directory);
    EXPECT_EQ(dir->text, "/boot/efi");

    auto uuid = parse_target_spec("UUID=1234-ABCD");
    ASSERT_TRUE(uuid.ok());
    EXPECT_EQ(uuid->kind, TargetKind::uuid);
    EXPECT_EQ(uuid->value, "1234-ABCD");
    EXPECT_EQ(uuid->text, "UUID=1234-ABCD");

    auto partuuid = parse_target_spec("PARTUUID=0b1c2d3e-4f50-4a6b-9c8d-7e6f5a4b3c2d");
    ASSERT_TRUE(partuuid.ok());
    EXPECT_EQ(partuuid->kind, TargetKind::partuuid);

    auto label = parse_target_spec("LABEL=EFI system");
    ASSERT_TRUE(label.ok());
    EXPECT_EQ(label->kind, TargetKind::label);
    EXPECT_EQ(label->value, "EFI system");

    auto device = parse_target_spec("/dev//vdb2");
    ASSERT_TRUE(device.ok());
    EXPECT_EQ(device->kind, TargetKind::device_path);
    EXPECT_EQ(device->text, "/dev/vdb2");
    // A path that only looks like /dev before normalizing is a directory.
    auto escaped = parse_target_spec("/dev/../boot/efi");
    ASSERT_TRUE(escaped.ok());
    EXPECT_EQ(escaped->kind, TargetKind::directory);
    EXPECT_EQ(escaped->text, "/boot/efi");
}

TEST(HelperTargetSpec, EachKindOfBadSpecHasItsOwnMessage) {
    EXPECT_EQ(problem_of(""), "empty target (a directory, UUID=, PARTUUID=, LABEL= or a /dev/ path)");
    EXPECT_EQ(problem_of("UUID="), "UUID= names no UUID");
    EXPECT_EQ(problem_of("PARTUUID="), "PARTUUID= names no PARTUUID");
    EXPECT_EQ(problem_of("LABEL="), "LABEL= names no label");
    EXPECT_EQ(problem_of("UUID=12g4"), "UUID=12g4: 'g' is not allowed in a UUID (hexadecimal digits and '-' only)");
    EXPECT_EQ(problem_of("UUID=-1234"), "UUID=-1234: misplaced '-' in a UUID");
    EXPECT_EQ(problem_of("UUID=12--34"), "UUID=12--34: misplaced '-' in a UUID");
    EXPECT_EQ(problem_of("UUID=" + std::string(65, 'a')), "UUID=aaaaaaaaaaaaaaaa...: too long for a UUID (at most 64 characters)");
    EXPECT_EQ(problem_of("LABEL=a/b"), "LABEL=a/b: '/' is not allowed in a label");
    EXPECT_EQ(problem_of("LABEL= esp"), "LABEL=\" esp\": leading or trailing blanks (file systems drop them; write the label as blkid shows it)");
    EXPECT_EQ(problem_of("LABEL=" + std::string(256, 'x')), "LABEL=...: too long for a label (at most 255 bytes)");
    EXPECT_EQ(problem_of("PARTLABEL=esp"), "unknown tag PARTLABEL= (known: UUID=, PARTUUID=, LABEL=)");
    EXPECT_EQ(problem_of("uuid=1234"), "unknown tag uuid= (tags are upper case: UUID=)");
    EXPECT_EQ(problem_of("dev/sda1"), "\"dev/sda1\" is a relative device path; write /dev/sda1");
    EXPECT_EQ(problem_of("boot/efi"),
              "\"boot/efi\" is not an absolute path (a target is a directory, UUID=, PARTUUID=, LABEL= or a /dev/ path)");
    EXPECT_EQ(problem_of("/dev"), "\"/dev\" is a directory of device nodes, not a helper target");
    EXPECT_EQ(problem_of("/dev/sda1/"), "\"/dev/sda1/\": a device path may not end in '/'");
    EXPECT_EQ(problem_of("LABEL=a\tb"), "target contains the control character \\x09");
}

TEST(HelperTargetSpec, ADevPathThatIsNoBlockDeviceIsRefusedWhenTheConfigLoads) {
    auto null = parse_target_spec("/dev/null");
    ASSERT_TRUE(null.ok());
    EXPECT_EQ(target_spec_problem_now(*null), "\"/dev/null\" is under /dev but is not a block device");
    auto missing = parse_target_spec("/dev/volwatch-no-such-device");
    ASSERT_TRUE(missing.ok());
    EXPECT_EQ(target_spec_problem_now(*missing), "");  // a per-target error at sync time
    // A directory under /dev (tmpfs /dev/shm) is a directory target.
    auto shm = parse_target_spec("/dev/shm");
    ASSERT_TRUE(shm.ok());
    EXPECT_EQ(target_spec_problem_now(*shm), "");
    EXPECT_FALSE(names_device(HelperTarget{"/dev/shm", false, {}, {}, {}}));
}

TEST(HelperTargetSpec, HostConfigNamesFileLineAndKey) {
    auto bad = parse_host_config("[[helpers]]\nvolume = \"/\"\ntargets = [\"/boot/efi\", \"UUID=xyz\"]\n", "host.toml");
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.problem().code, ExitCode::bad_host_config);
    EXPECT_NE(bad.problem().message.find("host.toml:3"), std::string::npos) << bad.problem().message;
    EXPECT_NE(bad.problem().message.find("helpers[0].targets[1]: UUID=xyz: 'x' is not allowed in a UUID"), std::string::npos)
        << bad.problem().message;

    auto fstype = parse_host_config("[[helpers]]\nvolume = \"/\"\ntargets = [\"LABEL=ESP\"]\nfstype = \"v fat\"\n", "host.toml");
    ASSERT_FALSE(fstype.ok());
    EXPECT_NE(fstype.problem().message.find("helpers[0].fstype: \"v fat\" is not a file-system type name"), std::string::npos)
        << fstype.problem().message;

    auto good = parse_host_config("[[helpers]]\nvolume = \"/\"\ntargets = [\"LABEL=ESP\", \"/boot/efi/\"]\nfstype = \"vfat\"\n", "host.toml");
    ASSERT_TRUE(good.ok()) << good.problem().message;
    ASSERT_EQ(good->helpers.size(), 1u);
    EXPECT_EQ(good->helpers[0].fstype, "vfat");
    EXPECT_EQ(good->helpers[0].targets[0], "LABEL=ESP");
}

TEST(HelperTargetSpec, DeviceTargetsAreKeyedByTheirSpec) {
    HelperTarget target{"UUID=1234-ABCD", false, "vfat", {}, {}};
    EXPECT_TRUE(names_device(target));
    HelperTarget mounted = target;
    mounted.path = "/tmp/volwatch-helper.abc123";
    mounted.stamp_key = "UUID=1234-ABCD";
    EXPECT_EQ(bootstamp_relpath(stamp_identity(mounted)), bootstamp_relpath(stamp_identity(target)));
    EXPECT_FALSE(names_device(HelperTarget{"/boot/efi", false, {}, {}, {}}));
}

}  // namespace
}  // namespace volwatch
