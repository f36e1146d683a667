#pragma once
// ProgramSink: an external program as an arrival sink, in the spirit of Exchange's
// CDO_OnArrival script sinks.
//
// For each message the program is started without a shell (posix_spawn with the
// configured argv), with the message on stdin and the envelope in its environment:
//   BH_SENDER, BH_RECIPIENTS (comma-separated), BH_CLIENT_ADDRESS, BH_HELO,
//   BH_QUEUE_ID, BH_SIZE, and PATH=/usr/local/bin:/usr/bin:/bin.
// It answers on stdout, one directive per line (at most 64 KiB in all):
//   ADD-HEADER Name: value     append a header field (may repeat)
//   CONTINUE                   pass to the next sink (also the default with no verdict)
//   ACCEPT                     accept now; later sinks are not run
//   DISCARD                    acknowledge, then drop the message
//   REJECT <code> <x.y.z> text refuse with that reply (4xx transient, 5xx permanent)
// and exits 0. Another exit status, a signal, unparsable output or the timeout is a sink
// failure (the chain's failure policy decides); at the timeout the program is killed.
//
// Threading: the pipes are Asio descriptors on the caller's executor; the child is
// reaped by polling waitpid(WNOHANG) on a short timer. Nothing blocks the loop.

#include <chrono>
#include <string>
#include <vector>

#include "sinks/sink.h"

namespace bh::sinks {

struct ProgramConfig {
  std::vector<std::string> argv;  // argv[0]: absolute path of the program
  std::chrono::milliseconds timeout{30000};
  std::size_t max_output = 64u << 10;
};

// The program's stdout -> its verdict and the headers to add; exposed for tests.
struct ProgramAnswer {
  Verdict verdict;
  std::vector<std::pair<std::string, std::string>> headers;
};
Result<ProgramAnswer> parse_program_output(std::string_view out);

class ProgramSink : public MessageSink {
 public:
  explicit ProgramSink(ProgramConfig config);
  void on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
                  Done done) override;

 private:
  ProgramConfig config_;
};

}  // namespace bh::sinks
