// How fast can any RE2-based scanner go on this rule set and corpus? Times RE2::Set::Match
// (the many-match DFA leakwatch's core uses) straight from C++, with no per-match work, over
// newline-aligned blocks of several sizes and over the whole input in one call.
//
//   .venv/bin/python -m bench.tools.patterns > /tmp/pats.txt
//   head -c 20000000 bench/.corpus/corpus-20240311-200.log > /tmp/data.bin
//   g++ -O2 -o /tmp/re2_ceiling bench/tools/re2_ceiling.cc $(pkg-config --cflags --libs re2)
//   /tmp/re2_ceiling /tmp/pats.txt /tmp/data.bin [number of rules]
#include <re2/re2.h>
#include <re2/set.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s PATTERNS_FILE DATA_FILE [N_RULES]\n", argv[0]);
    return 2;
  }
  std::ifstream pf(argv[1]);
  std::vector<std::string> patterns;
  for (std::string line; std::getline(pf, line);)
    if (!line.empty()) patterns.push_back(line);
  size_t n_rules = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : patterns.size();
  if (n_rules > patterns.size()) n_rules = patterns.size();
  std::ifstream df(argv[2], std::ios::binary);
  std::stringstream buf;
  buf << df.rdbuf();
  const std::string data = buf.str();

  RE2::Options opts;  // as leakwatch._core.scanner.make_options
  opts.set_encoding(RE2::Options::EncodingLatin1);
  opts.set_never_nl(true);
  opts.set_max_mem(256 << 20);
  opts.set_log_errors(false);
  RE2::Set set(opts, RE2::UNANCHORED);
  for (size_t i = 0; i < n_rules; i++) {
    std::string err;
    if (set.Add("(?m)" + patterns[i], &err) < 0) {
      std::fprintf(stderr, "rule %zu: %s\n", i, err.c_str());
      return 1;
    }
  }
  if (!set.Compile()) return 1;

  const size_t sizes[] = {128, 512, 2048, 16384, data.size()};
  for (size_t bs : sizes) {
    for (int round = 0; round < 2; round++) {  // round 0 builds DFA states, round 1 is warm
      double t = seconds();
      size_t pos = 0, n = data.size();
      long calls = 0, hits = 0;
      std::vector<int> v;
      while (pos < n) {
        size_t end = pos + bs;
        if (end >= n) {
          end = n;
        } else {
          const char* q = static_cast<const char*>(std::memchr(data.data() + end - 1, '\n', n - end + 1));
          end = q ? static_cast<size_t>(q - data.data()) + 1 : n;
        }
        if (set.Match(re2::StringPiece(data.data() + pos, end - pos), &v)) hits++;
        calls++;
        pos = end;
      }
      double dt = seconds() - t;
      std::printf("%zu rules, block %9zu B, %s: %4.0f MB/s (%ld calls, %ld with a match)\n", n_rules, bs,
                  round ? "warm" : "cold", n / dt / 1e6, calls, hits);
    }
  }
  return 0;
}
