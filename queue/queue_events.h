#pragma once
// QueueEvents: what the QueueManager tells an observer (the message tracking log) about
// the messages it owns. The queue manager only reports; the observer decides what to
// record and how (queue/tracking_log.h: QueueTracker). No JSON here.
//
// Threading: on_event runs on the queue manager's delivery thread, outside its lock.
// It must be quick, must not throw, and must not block mail flow on its own failures.
// Every view in a QueueEvent is valid only during the call.

#include <string_view>

#include "queue/envelope.h"
#include "queue/queue_file.h"

namespace bh::queue {

struct QueueEvent {
  enum class Kind {
    kReceived,   // first read of a committed message (or of one recovered at start)
    kDelivered,  // one recipient delivered (Maildir copy published and synced)
    kDeferred,   // one recipient failed transiently; retried later
    kFailed,     // one recipient failed permanently
    kRelayed,    // one recipient accepted by a remote server (next_hop, reply)
    kExpired,    // one recipient given up at expiry
    kDeleted,    // one recipient removed with its message by the operator
    kReported,   // a delivery report (DSN) was queued to the sender; reply: its queue id
    kExpanded,   // one recipient expanded by the categorizer; reply: what it became
  };
  Kind kind = Kind::kReceived;
  std::string_view queue_id;
  const StoredMessage* message = nullptr;  // the queue file as read: envelope, body location
  std::string_view queue_path;             // the queue file (body at message->body_offset)
  const Recipient* recipient = nullptr;    // per-recipient kinds; null for kReceived
  std::string_view mailbox;                // kDelivered: local mailbox name
  std::string_view delivered_path;         // kDelivered: the Maildir file, if new
  std::string_view reply;                  // kDelivered/kDeferred/kFailed: the result text
  std::string_view next_hop;               // remote kinds: the scheduler's next hop
  bool recovered = false;                  // kReceived: found in the spool at start
};

class QueueEvents {
 public:
  virtual ~QueueEvents() = default;
  virtual void on_event(const QueueEvent& event) = 0;
  // Everything reported so far must be written out now (the queue manager calls it at
  // the end of a batch, before it removes queue files, and when it stops).
  virtual void flush() {}
};

}  // namespace bh::queue
