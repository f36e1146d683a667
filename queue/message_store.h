#pragma once
// MessageStore: the durable spool (DESIGN.md §3 step 3, STYLE.md principle 3).
//
// Contract
// - begin() reserves a queue id and opens a spool writer; the body is streamed through
//   SpoolWriter::write() and never held whole in memory.
// - commit() makes body + envelope durable (data fsynced, renamed into place, directory
//   fsynced) and only then calls `done` with the queue id. Implementations may batch
//   the fsyncs of concurrent commits (group commit). `done` runs on an arbitrary thread:
//   callers post it back to their own executor.
// - A writer destroyed without commit() leaves nothing behind.
// - Errors: transient (4.3.0 I/O failure, 4.3.1 out of space) or permanent (5.3.4 too big).
// Threading: begin(), check_space() and SpoolWriter calls are made from any thread, one
// writer per session; commit() may be called concurrently from many threads.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "queue/envelope.h"

namespace bh::queue {

class SpoolWriter {
 public:
  virtual ~SpoolWriter() = default;
  virtual const std::string& id() const = 0;
  // Appends body octets. A failure is sticky: later writes and commit() fail too.
  virtual Result<void> write(std::string_view bytes) = 0;
  virtual std::uint64_t bytes_written() const = 0;
};

using CommitCallback = std::function<void(Result<std::string> queue_id)>;

class MessageStore {
 public:
  virtual ~MessageStore() = default;

  // 452 4.3.1 when the spool's file system is below its free-space floor.
  virtual Result<void> check_space() const = 0;
  virtual Result<std::unique_ptr<SpoolWriter>> begin() = 0;
  virtual void commit(std::unique_ptr<SpoolWriter> writer, Envelope envelope,
                      CommitCallback done) = 0;
};

}  // namespace bh::queue
