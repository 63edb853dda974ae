// Helpers shared by the ctest driver's source files (pvtseg_tests.cpp, unit_tests.cpp).
#pragma once

#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "pvtseg/segmenter.hpp"

namespace pvtseg_test {

inline int g_checks = 0;
inline int g_failures = 0;

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    ++pvtseg_test::g_checks;                                                           \
    if (!(cond)) {                                                                     \
      ++pvtseg_test::g_failures;                                                       \
      std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK failed: " #cond << "\n";    \
    }                                                                                  \
  } while (0)

// fn must throw a pvtseg::Error with code `want` and a fix-it message; `must_say`, when
// given, must appear in the message (the error says what differs).
inline void expect_error(pvtseg::ErrorCode want, const std::string& what, const std::function<void()>& fn,
                         const std::string& must_say = std::string()) {
  ++g_checks;
  try {
    fn();
    ++g_failures;
    std::cerr << "FAIL " << what << ": no pvtseg::Error thrown (expected " << pvtseg::to_string(want) << ")\n";
  } catch (const pvtseg::Error& e) {
    if (e.code() != want) {
      ++g_failures;
      std::cerr << "FAIL " << what << ": code " << pvtseg::to_string(e.code()) << ", expected "
                << pvtseg::to_string(want) << ": " << e.what() << "\n";
    } else if (e.fix().empty()) {
      ++g_failures;
      std::cerr << "FAIL " << what << ": the error has no fix-it message: " << e.what() << "\n";
    } else if (!must_say.empty() && e.message().find(must_say) == std::string::npos) {
      ++g_failures;
      std::cerr << "FAIL " << what << ": the message does not say '" << must_say << "': " << e.what() << "\n";
    } else {
      std::cout << "ok   " << what << " -> " << pvtseg::to_string(e.code()) << ": " << e.what() << "\n";
    }
  } catch (const std::exception& e) {
    ++g_failures;
    std::cerr << "FAIL " << what << ": a non-pvtseg exception: " << e.what() << "\n";
  }
}

inline int finish(const std::string& name) {
  std::cout << name << ": " << (g_checks - g_failures) << " passed, " << g_failures << " failed\n";
  return g_failures == 0 ? 0 : 1;
}

inline bool exists(const std::string& p) { return static_cast<bool>(std::ifstream(p)); }

inline std::string read_text(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_text(const std::string& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

inline void copy_file(const std::string& from, const std::string& to) {
  std::ifstream src(from, std::ios::binary);
  std::ofstream dst(to, std::ios::binary);
  dst << src.rdbuf();
}

inline std::vector<std::string> read_lines(const std::string& p) {
  std::vector<std::string> out;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// The case names of cases.txt ("<name> [min agreement]" per line).
inline std::vector<std::string> case_names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& line : read_lines(dir + "/cases.txt")) {
    std::string name;
    std::istringstream(line) >> name;
    names.push_back(name);
  }
  return names;
}

// Returns false (and prints why) when the generated test data is missing.
inline bool have_data(const std::string& dir, const std::string& model = "model") {
  if (exists(dir + "/" + model + ".ts") && exists(dir + "/" + model + ".json") && exists(dir + "/cases.txt")) {
    return true;
  }
  std::cout << "SKIP: no test data '" << model << "' in '" << dir
            << "' (generate it with: python3 cpp/tests/make_test_data.py --out " << dir << ")\n";
  return false;
}

inline pvtseg::SegmenterOptions cpu_options(const std::string& model) {
  pvtseg::SegmenterOptions opt;
  opt.model_path = model;
  opt.device_type = pvtseg::Device::kCPU;
  return opt;
}

inline std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// Unit tests in unit_tests.cpp.
int test_io_contract();
int test_postprocess();
int test_engine_cache(const std::string& dir, const std::string& tmp);
int test_preprocess_reference(const std::string& dir);
int test_sidecar_mismatch(const std::string& dir, const std::string& tmp);

}  // namespace pvtseg_test
