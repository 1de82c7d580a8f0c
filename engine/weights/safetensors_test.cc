#include "engine/weights/safetensors.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;

// Bytes of a safetensors file: 8-byte little-endian header length, header, data.
std::string BuildSafetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + header + data;
}

template <typename T>
std::string Bytes(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// A file under the test temp dir holding `contents`, removed on destruction
// (an open SafetensorsFile keeps its mapping after the unlink).
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    static int counter = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = (std::filesystem::path(::testing::TempDir()) /
             (std::string("st_") + info->name() + "_" + std::to_string(counter++) +
              ".safetensors"))
                .string();
    std::ofstream(path_, std::ios::binary).write(contents.data(), contents.size());
  }
  ~TempFile() { std::filesystem::remove(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

absl::StatusOr<std::unique_ptr<SafetensorsFile>> OpenBytes(const std::string& contents) {
  TempFile temp(contents);
  return SafetensorsFile::Open(temp.path());
}

// A valid two-tensor F32 file used as the base for corruption tests.
std::string ValidFile() {
  return BuildSafetensors(
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}})",
      Bytes(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}));
}

// Expects a non-OK status whose message names the file and `tensor`.
void ExpectErrorNaming(const std::string& header, const std::string& data,
                       const std::string& tensor) {
  TempFile temp(BuildSafetensors(header, data));
  const std::string& path = temp.path();
  auto file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok()) << header;
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
  EXPECT_THAT(file.status().message(), HasSubstr(path));
  EXPECT_THAT(file.status().message(), HasSubstr("'" + tensor + "'"));
}

TEST(SafetensorsTest, RoundTripF32) {
  auto file = OpenBytes(ValidFile());
  ASSERT_TRUE(file.ok()) << file.status();
  auto a = (*file)->ReadFloat("a", {2, 3});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  auto b = (*file)->ReadFloat("b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, (std::vector<float>{7, 8}));
  const TensorInfo* info = (*file)->find("a");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->dtype, DType::kF32);
  EXPECT_EQ(info->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(info->offset, 0u);
  EXPECT_EQ(info->nbytes, 24u);
  EXPECT_EQ(info->num_elements(), 6);
}

TEST(SafetensorsTest, NamesMetadataAndLookup) {
  auto file = OpenBytes(ValidFile());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE((*file)->contains("a"));
  EXPECT_FALSE((*file)->contains("c"));
  EXPECT_FALSE((*file)->contains("__metadata__"));
  EXPECT_EQ((*file)->find("c"), nullptr);
  ASSERT_EQ((*file)->metadata().size(), 1u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  auto raw = (*file)->RawData("b");
  ASSERT_TRUE(raw.ok()) << raw.status();
  float first;
  std::memcpy(&first, *raw, sizeof(first));
  EXPECT_EQ(first, 7.0f);
}

TEST(SafetensorsTest, NoMetadataIsEmpty) {
  auto file = OpenBytes(BuildSafetensors(R"({"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",
                                         Bytes(std::vector<float>{3.5f})));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->metadata().empty());
  auto x = (*file)->ReadFloat("x");
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_EQ(*x, std::vector<float>{3.5f});  // scalar: empty shape, one element
}

TEST(SafetensorsTest, RoundTripF16) {
  // 1, -2, 0.5, 65504 (max), 2^-24 (smallest subnormal), -0.
  const std::vector<uint16_t> bits = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000};
  auto file = OpenBytes(BuildSafetensors(
      R"({"h":{"dtype":"F16","shape":[6],"data_offsets":[0,12]}})", Bytes(bits)));
  ASSERT_TRUE(file.ok()) << file.status();
  auto h = (*file)->ReadFloat("h", {6});
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(*h, (std::vector<float>{1.0f, -2.0f, 0.5f, 65504.0f, std::ldexp(1.0f, -24), -0.0f}));
  EXPECT_TRUE(std::signbit((*h)[5]));
}

TEST(SafetensorsTest, RoundTripBF16) {
  const std::vector<uint16_t> bits = {0x3f80, 0xc040, 0x4049, 0x0000};
  auto file = OpenBytes(BuildSafetensors(
      R"({"g":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})", Bytes(bits)));
  ASSERT_TRUE(file.ok()) << file.status();
  auto g = (*file)->ReadFloat("g");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(*g, (std::vector<float>{1.0f, -3.0f, 3.140625f, 0.0f}));
}

TEST(SafetensorsTest, RoundTripF64AndIntegers) {
  const std::string data = Bytes(std::vector<double>{0.25, -1e10}) +
                           Bytes(std::vector<int32_t>{-7, 42}) +
                           Bytes(std::vector<int64_t>{123456, -1});
  auto file = OpenBytes(BuildSafetensors(
      R"({"d":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
      R"("i":{"dtype":"I32","shape":[2],"data_offsets":[16,24]},)"
      R"("l":{"dtype":"I64","shape":[2],"data_offsets":[24,40]}})",
      data));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(*(*file)->ReadFloat("d"), (std::vector<float>{0.25f, -1e10f}));
  EXPECT_EQ(*(*file)->ReadFloat("i"), (std::vector<float>{-7.0f, 42.0f}));
  EXPECT_EQ(*(*file)->ReadFloat("l"), (std::vector<float>{123456.0f, -1.0f}));
}

TEST(SafetensorsTest, UnalignedDataSection) {
  // A 3-byte pad in the header shifts the data section off 4-byte alignment.
  std::string header = R"({"u":{"dtype":"F32","shape":[3],"data_offsets":[1,13]}})";
  header += "   ";
  std::string data(1, '\x7f');  // one unused byte before the tensor
  data += Bytes(std::vector<float>{1.5f, -2.5f, 9.0f});
  auto file = OpenBytes(BuildSafetensors(header, data));
  ASSERT_TRUE(file.ok()) << file.status();
  auto u = (*file)->ReadFloat("u");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(*u, (std::vector<float>{1.5f, -2.5f, 9.0f}));
}

TEST(SafetensorsTest, EmptyTensorIsAllowed) {
  auto file = OpenBytes(BuildSafetensors(
      R"({"e":{"dtype":"F32","shape":[0,4],"data_offsets":[4,4]},)"
      R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
      Bytes(std::vector<float>{1, 2})));
  ASSERT_TRUE(file.ok()) << file.status();
  auto e = (*file)->ReadFloat("e", {0, 4});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e->empty());
}

TEST(SafetensorsTest, HalfConversions) {
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(HalfToFloat(0x0400), std::ldexp(1.0f, -14));            // smallest normal
  EXPECT_EQ(HalfToFloat(0x03ff), 1023.0f * std::ldexp(1.0f, -24));  // largest subnormal
  EXPECT_EQ(HalfToFloat(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(HalfToFloat(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7e00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7c01)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0xfe00)));
  EXPECT_EQ(BFloat16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(0xff80), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(0x7fc0)));
}

TEST(SafetensorsTest, DTypeNamesAndSizes) {
  EXPECT_EQ(DTypeName(DType::kF32), "F32");
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeName(DType::kI64), "I64");
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI32), 4u);
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
}

TEST(SafetensorsTest, ExpectedShapeMismatchNamesTensor) {
  auto file = OpenBytes(ValidFile());
  ASSERT_TRUE(file.ok()) << file.status();
  auto a = (*file)->ReadFloat("a", {3, 2});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(a.status().message(), HasSubstr("'a'"));
}

TEST(SafetensorsTest, MissingTensorIsNotFound) {
  auto file = OpenBytes(ValidFile());
  ASSERT_TRUE(file.ok()) << file.status();
  auto missing = (*file)->ReadFloat("model.missing.weight");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("model.missing.weight"));
  auto raw = (*file)->RawData("model.missing.weight");
  EXPECT_EQ(raw.status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open(::testing::TempDir() + "/does_not_exist.safetensors");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, DirectoryIsRejected) {
  auto file = SafetensorsFile::Open(::testing::TempDir());
  EXPECT_FALSE(file.ok());
}

TEST(SafetensorsTest, ShorterThanEightBytes) {
  for (size_t n = 0; n < 8; ++n) {
    auto file = OpenBytes(std::string(n, '\0'));
    ASSERT_FALSE(file.ok()) << n;
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(SafetensorsTest, HeaderLengthLargerThanFile) {
  std::string bytes = BuildSafetensors("{}", "");
  bytes[0] = 3;  // claims 3 header bytes, only 2 present
  EXPECT_FALSE(OpenBytes(bytes).ok());
  std::string huge(8, '\xff');  // 2^64 - 1: must not overflow the bounds check
  EXPECT_FALSE(OpenBytes(huge + "{}").ok());
}

TEST(SafetensorsTest, EmptyHeaderObjectIsValid) {
  auto file = OpenBytes(BuildSafetensors("{}", ""));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->names().empty());
}

TEST(SafetensorsTest, InvalidJson) {
  for (const std::string header : {"", "{", "{\"a\":}", "not json", "{\"a\":1}}", "{\"\xff\":1}"}) {
    auto file = OpenBytes(BuildSafetensors(header, ""));
    EXPECT_FALSE(file.ok()) << header;
  }
}

TEST(SafetensorsTest, NonObjectHeader) {
  for (const std::string header : {"[]", "1", "\"x\"", "null"}) {
    EXPECT_FALSE(OpenBytes(BuildSafetensors(header, "")).ok()) << header;
  }
}

TEST(SafetensorsTest, NonObjectEntryNamesTensor) {
  ExpectErrorNaming(R"({"w":[1,2]})", "", "w");
  ExpectErrorNaming(R"({"w":"F32"})", "", "w");
}

TEST(SafetensorsTest, MissingOrMistypedFieldsNameTensor) {
  const std::string data(8, '\0');
  ExpectErrorNaming(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", data, "w");
  ExpectErrorNaming(R"({"w":{"dtype":5,"shape":[2],"data_offsets":[0,8]}})", data, "w");
  ExpectErrorNaming(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", data, "w");
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", data, "w");
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", data, "w");
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", data, "w");
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":[2]}})", data, "w");
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data, "w");
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", data, "w");
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", data, "w");
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}})", data, "w");
}

TEST(SafetensorsTest, UnknownDtypeNamesTensor) {
  ExpectErrorNaming(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})",
                    std::string(2, '\0'), "w");
  ExpectErrorNaming(R"({"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})",
                    std::string(8, '\0'), "w");
}

TEST(SafetensorsTest, NegativeDimNamesTensor) {
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":[-2,-1],"data_offsets":[0,8]}})",
                    std::string(8, '\0'), "w");
}

TEST(SafetensorsTest, HugeShapeNamesTensor) {
  // The byte count would wrap around 2^64 without overflow checks.
  ExpectErrorNaming(
      R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", "", "w");
  ExpectErrorNaming(
      R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})",
      std::string(4, '\0'), "w");
}

TEST(SafetensorsTest, SizeMismatchNamesTensor) {
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                    std::string(16, '\0'), "w");
  ExpectErrorNaming(R"({"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,4]}})",
                    std::string(16, '\0'), "w");
}

TEST(SafetensorsTest, BeginAfterEndNamesTensor) {
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})",
                    std::string(8, '\0'), "w");
}

TEST(SafetensorsTest, RangePastDataEndNamesTensor) {
  ExpectErrorNaming(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})",
                    std::string(8, '\0'), "w");
  ExpectErrorNaming(
      R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551616]}})",
      std::string(8, '\0'), "w");
}

TEST(SafetensorsTest, OverlappingRangesNameTensor) {
  const std::string data(16, '\0');
  ExpectErrorNaming(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                    data, "b");
  // Listed out of order, and one range inside another.
  ExpectErrorNaming(R"({"z":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                    R"("y":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                    data, "z");
  // Same range twice.
  ExpectErrorNaming(R"({"p":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("q":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                    data, "q");
}

TEST(SafetensorsTest, DuplicateNameNamesTensor) {
  ExpectErrorNaming(R"({"d":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                    R"("d":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                    std::string(8, '\0'), "d");
}

TEST(SafetensorsTest, MetadataMustMapStringsToStrings) {
  const std::string tensor = R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  const std::string data(4, '\0');
  for (const std::string meta : {R"("__metadata__":{"k":1})", R"("__metadata__":{"k":null})",
                                 R"("__metadata__":{"k":{"x":"y"}})", R"("__metadata__":"k")",
                                 R"("__metadata__":["k"])"}) {
    auto file = OpenBytes(BuildSafetensors("{" + meta + "," + tensor + "}", data));
    ASSERT_FALSE(file.ok()) << meta;
    EXPECT_THAT(file.status().message(), HasSubstr("__metadata__"));
  }
}

TEST(SafetensorsTest, TruncatedFileNeverCrashes) {
  const std::string full = ValidFile();
  for (size_t n = 0; n < full.size(); ++n) {
    auto file = OpenBytes(full.substr(0, n));
    EXPECT_FALSE(file.ok()) << "cut at " << n;
  }
  EXPECT_TRUE(OpenBytes(full).ok());
}

TEST(SafetensorsTest, CorruptedBytesNeverCrash) {
  // Every header byte replaced by a few troublesome values: each file either
  // fails to open or opens and reads every tensor without crashing.
  const std::string full = ValidFile();
  const size_t header_end = full.size() - 32;
  for (size_t i = 0; i < header_end; ++i) {
    for (char c : {'\0', '9', '-', '"', '{', ']', '\xff'}) {
      std::string bytes = full;
      bytes[i] = c;
      auto file = OpenBytes(bytes);
      if (!file.ok()) continue;
      for (const std::string& name : (*file)->names()) {
        auto values = (*file)->ReadFloat(name);
        ASSERT_TRUE(values.ok()) << values.status();
        EXPECT_EQ(static_cast<int64_t>(values->size()), (*file)->find(name)->num_elements());
      }
    }
  }
}

TEST(SafetensorsTest, SharedTestdataLoads) {
  const std::filesystem::path root = MTLA_TESTDATA_DIR;
  if (!std::filesystem::is_directory(root)) {
    GTEST_SKIP() << "shared testdata not found at " << root;
  }
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file() || entry.path().extension() != ".safetensors") continue;
    ++files;
    auto file = SafetensorsFile::Open(entry.path().string());
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_FALSE((*file)->names().empty()) << entry.path();
    for (const std::string& name : (*file)->names()) {
      const TensorInfo* info = (*file)->find(name);
      auto values = (*file)->ReadFloat(name, info->shape);
      ASSERT_TRUE(values.ok()) << values.status();
      EXPECT_EQ(static_cast<int64_t>(values->size()), info->num_elements()) << name;
    }
  }
  EXPECT_GT(files, 0) << "no .safetensors under " << root;
}

}  // namespace
}  // namespace mtla
