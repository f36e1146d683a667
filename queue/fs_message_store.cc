#include "queue/fs_message_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>  // renameat2
#include <cstring>
#include <optional>

#include "common/log.h"
#include "common/thread_name.h"
#include "queue/queue_file.h"

namespace bh::queue {
namespace {

Error io_error(int err, const std::string& what) {
  if (err == ENOSPC || err == EDQUOT) {
    return transient_error("4.3.1", "Insufficient system storage");
  }
  return transient_error("4.3.0", "Queue write failed: " + what + ": " + std::strerror(err));
}

bool write_all(int fd, const char* p, std::size_t n, int& err) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      err = errno;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

class FsSpoolWriter final : public SpoolWriter {
 public:
  // `tmp_name`: the file's name under tmp/ while it is written (the id, or the name of a
  // prepared spare); the commit renames it to queue/<id>. `old_size`: the length of a
  // reused file (0 for a new one; -1 unknown), so finish() cuts it only when it is longer.
  FsSpoolWriter(std::string id, std::string tmp_name, std::string path, int fd, off_t old_size,
                std::function<int(std::string_view, std::string_view)> fault)
      : id_(std::move(id)),
        tmp_name_(std::move(tmp_name)),
        path_(std::move(path)),
        fd_(fd),
        old_size_(old_size),
        fault_(std::move(fault)) {
    buf_.reserve(kBuffer);
    buf_.append(kQueueFileHeader);
  }
  ~FsSpoolWriter() override {
    if (fd_ >= 0) {  // never committed: leave nothing behind
      ::close(fd_);
      ::unlink(path_.c_str());
    }
  }
  const std::string& id() const override { return id_; }
  std::uint64_t bytes_written() const override { return body_; }

  Result<void> write(std::string_view bytes) override {
    if (error_) {
      return *error_;
    }
    body_ += bytes.size();
    while (!bytes.empty()) {
      std::size_t room = kBuffer - buf_.size();
      std::size_t n = std::min(room, bytes.size());
      buf_.append(bytes.substr(0, n));
      bytes.remove_prefix(n);
      if (buf_.size() == kBuffer) {
        if (auto r = flush(); !r.ok()) {
          return r;
        }
      }
    }
    return Ok{};
  }

  // Writes the records and the trailer: the file is complete but not yet durable.
  Result<void> finish(const Envelope& env) {
    if (error_) {
      return *error_;
    }
    if (auto v = validate_envelope(env); !v.ok()) {
      return v;  // would be quarantined on read: refuse it before the 250
    }
    // The records and the trailer (whose CRC covers header, body and records) go out with
    // the rest of the buffer: one write(2) for a message that fits in it.
    std::string recs = encode_envelope(env);
    buf_.append(recs);
    add_to_crc();
    buf_.append(encode_trailer(body_, recs.size(), static_cast<std::uint32_t>(crc_)));
    if (auto r = write_buffer(); !r.ok()) {
      return r;
    }
    // A reused file may be longer than this message: cut it at the trailer.
    const auto end = static_cast<off_t>(written_);
    if ((old_size_ < 0 || old_size_ > end) && ::ftruncate(fd_, end) != 0) {
      error_ = io_error(errno, "truncate");
      return *error_;
    }
    return Ok{};
  }

  int release_fd() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  const std::string& path() const { return path_; }
  const std::string& tmp_name() const { return tmp_name_; }

 private:
  static constexpr std::size_t kBuffer = 64u << 10;
  Result<void> flush() {
    add_to_crc();
    return write_buffer();
  }
  void add_to_crc() {
    crc_ = crc32(crc_, reinterpret_cast<const Bytef*>(buf_.data()), static_cast<uInt>(buf_.size()));
  }
  Result<void> write_buffer() {
    int err = fault_ ? fault_("write", id_) : 0;
    if (err != 0 || !write_all(fd_, buf_.data(), buf_.size(), err)) {
      error_ = io_error(err, "write");
      return *error_;
    }
    written_ += buf_.size();
    buf_.clear();
    return Ok{};
  }

  std::string id_, tmp_name_, path_;
  int fd_;
  off_t old_size_;
  std::function<int(std::string_view, std::string_view)> fault_;
  std::string buf_;
  std::uint64_t body_ = 0;
  std::uint64_t written_ = 0;  // the file offset: every write starts at 0 and appends
  uLong crc_ = crc32(0L, Z_NULL, 0);
  std::optional<Error> error_;
};

int open_dir(const std::string& path) { return ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); }

bool make_dir(const std::string& path) { return ::mkdir(path.c_str(), 0700) == 0 || errno == EEXIST; }

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(path.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") {
        names.push_back(std::move(n));
      }
    }
    ::closedir(d);
  }
  return names;
}

// Moves queue/<name> to quarantine/, never replacing an earlier quarantined file of the
// same name (a numeric suffix is added instead). Returns 0 or an errno.
int move_to_quarantine(int queue_fd, int quarantine_fd, const std::string& name) {
  std::string target = name;
  for (int n = 1; n < 1000; ++n) {
    if (::renameat2(queue_fd, name.c_str(), quarantine_fd, target.c_str(), RENAME_NOREPLACE) == 0) {
      return 0;
    }
    if (errno != EEXIST) {
      return errno;
    }
    target = name + "." + std::to_string(n);
  }
  return EEXIST;
}

}  // namespace

struct FsMessageStore::Pending {
  std::unique_ptr<FsSpoolWriter> writer;
  int fd;
  CommitCallback done;
};

FsMessageStore::FsMessageStore(FsStoreOptions options, const Clock& clock, Random& random)
    : opt_(std::move(options)), clock_(clock), random_(random) {}

FsMessageStore::~FsMessageStore() { close(); }

int FsMessageStore::fault(std::string_view step, std::string_view id) const {
  return opt_.fault ? opt_.fault(step, id) : 0;
}

Result<void> FsMessageStore::open() {
  for (const char* sub : {"", "/tmp", "/queue", "/quarantine", "/spare", "/state"}) {
    std::string p = opt_.root + sub;
    if (!make_dir(p)) {
      return transient_error("4.3.0", "cannot create " + p + ": " + std::strerror(errno));
    }
  }
  root_fd_ = open_dir(opt_.root);
  tmp_fd_ = open_dir(opt_.root + "/tmp");
  queue_fd_ = open_dir(opt_.root + "/queue");
  spare_fd_ = open_dir(opt_.root + "/spare");
  state_fd_ = open_dir(opt_.root + "/state");
  if (root_fd_ < 0 || tmp_fd_ < 0 || queue_fd_ < 0 || spare_fd_ < 0 || state_fd_ < 0) {
    return transient_error("4.3.0", "cannot open " + opt_.root + ": " + std::strerror(errno));
  }
  {
    std::lock_guard lock(spare_mu_);
    spare_ = list_dir(opt_.root + "/spare");
  }
  for (const std::string& name : list_dir(opt_.root + "/queue")) {
    newest_on_disk_ms_ = std::max(newest_on_disk_ms_, id_millis(name));
  }
  {
    std::lock_guard lock(mu_);
    BH_CHECK(!running_ && !stop_);  // open() once per store
    running_ = true;
  }
  committer_ = std::thread([this] {
    name_this_thread("bh-commit");
    committer_loop();
  });
  return Ok{};
}

void FsMessageStore::close() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    running_ = false;  // commits still pending are finished by the committer first
  }
  cv_.notify_all();
  if (committer_.joinable()) {
    committer_.join();
  }
  {
    // Prepared files go back to spare/ under their old ids (the next open() lists them);
    // after a crash, recover() removes them from tmp/ like any other temp file.
    std::lock_guard lock(spare_mu_);
    for (Prepared& p : prepared_) {
      ::close(p.fd);
      if (::renameat(tmp_fd_, p.name.c_str(), spare_fd_, p.name.substr(kPreparedPrefix.size()).c_str()) != 0) {
        ::unlinkat(tmp_fd_, p.name.c_str(), 0);
      }
    }
    prepared_.clear();
  }
  for (int* fd : {&root_fd_, &tmp_fd_, &queue_fd_, &spare_fd_, &state_fd_}) {
    if (*fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
  }
}

RecoveryReport FsMessageStore::recover() {
  RecoveryReport rep;
  // tmp/: never acknowledged to anyone, so never owed to anyone.
  for (const auto& n : list_dir(opt_.root + "/tmp")) {
    if (::unlinkat(tmp_fd_, n.c_str(), 0) == 0) {
      ++rep.removed_temp;
    }
  }
  int qfd = open_dir(opt_.root + "/quarantine");
  for (const auto& n : list_dir(opt_.root + "/queue")) {
    std::string path = opt_.root + "/queue/" + n;
    auto m = read_queue_file(path);
    if (m.ok() && m->envelope.id == n) {
      rep.ready.push_back(n);
      continue;
    }
    std::string why = m.ok() ? "id does not match file name" : m.error().message;
    int e = qfd < 0 ? EBADF : move_to_quarantine(queue_fd_, qfd, n);
    if (e == 0) {
      ++rep.quarantined;
      log::error("queue", "quarantined " + n + ": " + why);
    } else {
      // Left in queue/ (not delivered, not deleted); the next start tries again.
      log::error("queue", "cannot quarantine " + n + " (" + why + "): " + std::strerror(e));
    }
  }
  // state/: a state file whose message is gone (removed between the two unlinks, or a
  // temp file of an interrupted save) describes nothing.
  for (const auto& n : list_dir(opt_.root + "/state")) {
    if (n.front() == '.' || ::faccessat(queue_fd_, n.c_str(), F_OK, 0) != 0) {
      if (::unlinkat(state_fd_, n.c_str(), 0) == 0) {
        ++rep.orphan_states;
      }
    }
  }
  ::fsync(state_fd_);
  ::fsync(tmp_fd_);
  ::fsync(queue_fd_);
  if (qfd >= 0) {
    ::fsync(qfd);
    ::close(qfd);
  }
  std::sort(rep.ready.begin(), rep.ready.end());  // ids are time-ordered: oldest first
  return rep;
}

Result<void> FsMessageStore::check_space() const {
  struct statvfs st{};
  // On the descriptor open since open(): no path lookup at every MAIL.
  if ((root_fd_ >= 0 ? ::fstatvfs(root_fd_, &st) : ::statvfs(opt_.root.c_str(), &st)) != 0) {
    return transient_error("4.3.0", "Cannot check queue free space");
  }
  std::uint64_t avail = static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  if (avail < opt_.free_space_floor) {
    return transient_error("4.3.1", "Insufficient system storage");
  }
  return Ok{};
}

// The millisecond timestamp an id starts with (next_id); 0 for other names.
std::uint64_t FsMessageStore::id_millis(std::string_view id) {
  std::uint64_t ms = 0;
  if (id.size() < 11) {
    return 0;
  }
  auto [end, ec] = std::from_chars(id.data(), id.data() + 11, ms, 16);
  return ec == std::errc() && end == id.data() + 11 ? ms : 0;
}

std::string FsMessageStore::next_id() {
  std::lock_guard lock(id_mu_);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch()).count();
  char buf[40];
  std::snprintf(buf, sizeof buf, "%011llX%04X%05llX",
                static_cast<unsigned long long>(ms) & 0xFFFFFFFFFFFull,
                static_cast<unsigned>(seq_++ & 0xFFFF),
                static_cast<unsigned long long>(random_.next() & 0xFFFFF));
  return buf;
}

Result<std::unique_ptr<SpoolWriter>> FsMessageStore::begin() {
  // A collision (same millisecond, sequence and random part, e.g. after a restart with a
  // clock step back) is detected, never resolved by overwriting: retry with a new id.
  // Only an id no newer than the newest one found in queue/ at open() can collide with a
  // file of an earlier run (ids of this run differ in the sequence), so only those are
  // looked up; the commit's RENAME_NOREPLACE is the last guard.
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string id = next_id();
    if (id_millis(id) <= newest_on_disk_ms_ && ::faccessat(queue_fd_, id.c_str(), F_OK, 0) == 0) {
      continue;
    }
    if (auto prepared = take_prepared()) {
      std::string path = opt_.root + "/tmp/" + prepared->name;
      return std::unique_ptr<SpoolWriter>(std::make_unique<FsSpoolWriter>(
          id, std::move(prepared->name), std::move(path), prepared->fd, prepared->size, opt_.fault));
    }
    std::string path = opt_.root + "/tmp/" + id;
    int fd = reuse_spare(id, path);
    off_t old_size = -1;  // a spare's length is not known
    if (fd < 0) {
      fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      old_size = 0;
    }
    if (fd < 0) {
      if (errno == EEXIST) {
        continue;
      }
      return io_error(errno, "create " + path);
    }
    return std::unique_ptr<SpoolWriter>(
        std::make_unique<FsSpoolWriter>(id, id, std::move(path), fd, old_size, opt_.fault));
  }
  return transient_error("4.3.0", "Queue id collision");
}

void FsMessageStore::commit(std::unique_ptr<SpoolWriter> writer, Envelope envelope,
                            CommitCallback done) {
  BH_CHECK(writer != nullptr);
  auto* fs_writer = dynamic_cast<FsSpoolWriter*>(writer.get());
  BH_CHECK(fs_writer != nullptr);  // a writer from another store is a bug
  writer.release();
  std::unique_ptr<FsSpoolWriter> w(fs_writer);
  envelope.id = w->id();
  envelope.body_size = w->bytes_written();
  Result<void> finished = w->finish(envelope);
  if (finished.ok()) {
    std::unique_lock lock(mu_);
    if (running_) {
      int fd = w->release_fd();
      pending_.push_back(Pending{std::move(w), fd, std::move(done)});
      lock.unlock();
      cv_.notify_one();
      return;
    }
    finished = transient_error("4.3.0", "Queue is shutting down");
  }
  {
    std::lock_guard lock(mu_);
    ++counters_.failures;
  }
  w.reset();  // unlinks the temp file
  done(finished.error());
}

void FsMessageStore::committer_loop() {
  for (;;) {
    std::deque<Pending> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
      if (pending_.empty() && stop_) {
        return;
      }
      batch.swap(pending_);
    }
    // kSyncfs: rename every file into queue/, then one syncfs makes the data, the inodes
    // and both directories durable at once: one wait on the disk per batch. A name in
    // queue/ that is not yet durable is never acknowledged (the callbacks come after the
    // syncfs), and recovery validates every queue/ file (trailer CRC, id = name).
    // kFdatasync: one fdatasync per file, the renames, then one fsync of queue/.
    const bool syncfs_mode = opt_.sync_mode == SyncMode::kSyncfs;
    std::vector<int> errs(batch.size(), 0);
    std::uint64_t syncs = 0;
    if (!syncfs_mode) {
      for (std::size_t i = 0; i < batch.size(); ++i) {
        int err = fault("fdatasync", batch[i].writer->id());
        if (err == 0 && ::fdatasync(batch[i].fd) != 0) {
          err = errno;
        }
        ++syncs;
        errs[i] = err;
      }
    }
    // Publish: rename tmp/<id> -> queue/<id>, never over an existing name.
    std::vector<std::pair<CommitCallback, Result<std::string>>> results;
    std::size_t renamed = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto& p = batch[i];
      if (::close(p.fd) != 0 && errs[i] == 0 && errno != EINTR) {
        errs[i] = errno;  // NFS-style late write errors
      }
      const std::string& id = p.writer->id();
      const std::string& tmp_name = p.writer->tmp_name();
      int e = errs[i];
      if (e == 0) {
        e = fault("rename", id);
        if (e == 0 &&
            ::renameat2(tmp_fd_, tmp_name.c_str(), queue_fd_, id.c_str(), RENAME_NOREPLACE) != 0) {
          e = errno;
        }
      }
      if (e == 0) {
        ++renamed;
        results.emplace_back(std::move(p.done), Result<std::string>(id));
      } else {
        ::unlinkat(tmp_fd_, tmp_name.c_str(), 0);
        log::error("queue", "commit " + id + " failed: " + std::strerror(e));
        results.emplace_back(std::move(p.done), Result<std::string>(io_error(e, "commit " + id)));
      }
    }
    // Durable: one syncfs (data, inodes, directories), or one fsync of queue/ for the
    // new entries.
    if (renamed > 0) {
      const char* step = syncfs_mode ? "syncfs" : "fsync_dir";
      int e = fault(step, "");
      if (e == 0 && (syncfs_mode ? ::syncfs(tmp_fd_) : ::fsync(queue_fd_)) != 0) {
        e = errno;
      }
      syncs += syncfs_mode ? 1 : 0;
      if (e != 0) {
        // Not known to be durable: withdraw the renamed files and answer 4.3.0 (4.3.1 for
        // a full disk) for all of them. Should the withdrawal itself not persist, the
        // message is delivered although the client was told 4xx: a possible duplicate,
        // never a loss.
        log::error("queue", std::string(step) + " of the queue failed: " + std::strerror(e));
        for (auto& [cb, r] : results) {
          if (r.ok()) {
            ::unlinkat(queue_fd_, r.value().c_str(), 0);
            r = Result<std::string>(io_error(e, std::string(step) + " queue"));
          }
        }
      }
    }
    std::size_t failures = 0;
    for (auto& [cb, r] : results) {
      failures += r.ok() ? 0 : 1;
    }
    {
      std::lock_guard lock(mu_);
      ++counters_.batches;
      counters_.syncs += syncs;
      counters_.commits += results.size() - failures;
      counters_.failures += failures;
    }
    // 4. Only now: the acknowledgements.
    for (auto& [cb, r] : results) {
      cb(std::move(r));
    }
  }
}

std::string FsMessageStore::path_of(const std::string& id) const { return opt_.root + "/queue/" + id; }

Result<void> FsMessageStore::save_state(const std::string& id, const DeliveryState& state) {
  const std::string text = encode_delivery_state(state);
  const std::string tmp = "." + id;
  int fd = ::openat(state_fd_, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return io_error(errno, "state " + id);
  }
  std::string_view left = text;
  int e = 0;
  while (!left.empty() && e == 0) {
    ssize_t w = ::write(fd, left.data(), left.size());
    if (w < 0 && errno != EINTR) {
      e = errno;
    } else if (w > 0) {
      left.remove_prefix(static_cast<std::size_t>(w));
    }
  }
  if (e == 0 && ::fdatasync(fd) != 0) {
    e = errno;
  }
  if (::close(fd) != 0 && e == 0 && errno != EINTR) {
    e = errno;
  }
  if (e == 0 && ::renameat(state_fd_, tmp.c_str(), state_fd_, id.c_str()) != 0) {
    e = errno;
  }
  if (e == 0 && ::fsync(state_fd_) != 0) {
    e = errno;
  }
  if (e != 0) {
    ::unlinkat(state_fd_, tmp.c_str(), 0);
    return io_error(e, "state " + id);
  }
  std::lock_guard lock(state_mu_);
  with_state_.insert(id);
  return Ok{};
}

Result<std::optional<DeliveryState>> FsMessageStore::load_state(const std::string& id) const {
  int fd = ::openat(state_fd_, id.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return std::optional<DeliveryState>();
    }
    return io_error(errno, "state " + id);
  }
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0 || text.size() + static_cast<std::size_t>(n) > kMaxDeliveryStateBytes) {
      if (n > 0) {
        text.assign(kMaxDeliveryStateBytes + 1, ' ');  // decoded as "too large"
      }
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  {
    std::lock_guard lock(state_mu_);
    with_state_.insert(id);
  }
  auto s = decode_delivery_state(text);
  if (!s.ok()) {
    return s.error();
  }
  return std::optional<DeliveryState>(std::move(s.value()));
}

Result<void> FsMessageStore::save_frozen_hops(const std::set<std::string>& hops) {
  std::string text;
  for (const auto& h : hops) {
    if (h.empty() || h.find_first_of("\r\n") != std::string::npos) {
      return permanent_error("5.3.0", "bad next hop name");
    }
    text += h + "\n";
  }
  const std::string tmp = opt_.root + "/.frozen-hops.tmp", path = opt_.root + "/frozen-hops";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return io_error(errno, "frozen-hops");
  }
  int e = 0;
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    e = errno == 0 ? EIO : errno;
  }
  if (e == 0 && ::fdatasync(fd) != 0) {
    e = errno;
  }
  ::close(fd);
  if (e == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) {
    e = errno;
  }
  if (e == 0 && ::fsync(root_fd_) != 0) {
    e = errno;
  }
  if (e != 0) {
    ::unlink(tmp.c_str());
    return io_error(e, "frozen-hops");
  }
  return Ok{};
}

std::set<std::string> FsMessageStore::load_frozen_hops() const {
  std::set<std::string> out;
  int fd = ::open((opt_.root + "/frozen-hops").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return out;
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < (1u << 20)) {
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      break;  // a torn last line: the rename makes this impossible, but never guess
    }
    if (nl > pos) {
      out.insert(text.substr(pos, nl - pos));
    }
    pos = nl + 1;
  }
  return out;
}

void FsMessageStore::remove_state(const std::string& id) {
  {
    std::lock_guard lock(state_mu_);
    if (with_state_.erase(id) == 0) {
      return;  // never had one: spare the system call on the common path
    }
  }
  ::unlinkat(state_fd_, id.c_str(), 0);
}

Result<void> FsMessageStore::remove(const std::string& id) {
  auto r = remove_queue_file(id);
  if (r.ok()) {
    remove_state(id);  // after the queue file: an orphan state is harmless, a lost one is not
  }
  return r;
}

std::optional<FsMessageStore::Prepared> FsMessageStore::take_prepared() {
  std::lock_guard lock(spare_mu_);
  if (prepared_.empty()) {
    return std::nullopt;
  }
  Prepared p = std::move(prepared_.back());
  prepared_.pop_back();
  return p;
}

bool FsMessageStore::prepare_from(const std::string& id) {
  {
    std::lock_guard lock(spare_mu_);
    if (prepared_.size() >= kMaxPrepared || tmp_fd_ < 0) {
      return false;
    }
  }
  // Outside the lock: begin() on the sessions' threads only ever waits for a pop.
  std::string name = std::string(kPreparedPrefix) + id;  // unique, as the id is; never taken for a queue id
  if (::renameat(queue_fd_, id.c_str(), tmp_fd_, name.c_str()) != 0) {
    return false;
  }
  int fd = ::openat(tmp_fd_, name.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    ::unlinkat(tmp_fd_, name.c_str(), 0);  // out of queue/ already: removed either way
    return true;
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    st.st_size = -1;  // unknown: the writer cuts it to length
  }
  std::lock_guard lock(spare_mu_);
  prepared_.push_back(Prepared{std::move(name), fd, st.st_size});
  return true;
}

Result<void> FsMessageStore::remove_queue_file(const std::string& id) {
  // Keep the inode and its blocks for a later message (see spare_ in the header). The
  // old content stays until the file is overwritten; it is the same mail that sits in
  // the recipient's Maildir under the same data_dir and owner.
  if (prepare_from(id)) {
    return Ok{};
  }
  {
    std::lock_guard lock(spare_mu_);
    if (spare_.size() < kMaxSpare && ::renameat(queue_fd_, id.c_str(), spare_fd_, id.c_str()) == 0) {
      spare_.push_back(id);
      return Ok{};
    }
  }
  if (::unlinkat(queue_fd_, id.c_str(), 0) != 0 && errno != ENOENT) {
    return io_error(errno, "remove " + id);
  }
  return Ok{};
}

int FsMessageStore::reuse_spare(const std::string& id, const std::string& path) {
  std::string name;
  {
    std::lock_guard lock(spare_mu_);
    if (spare_.empty()) {
      return -1;
    }
    name = std::move(spare_.back());
    spare_.pop_back();
  }
  if (::renameat(spare_fd_, name.c_str(), tmp_fd_, id.c_str()) != 0) {
    return -1;
  }
  // No O_TRUNC: overwriting allocated blocks in place frees and allocates nothing (and on
  // a file system mounted with discard, freeing blocks costs a discard per journal
  // commit); finish() cuts the file to its new length.
  return ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
}

Result<void> FsMessageStore::quarantine(const std::string& id) {
  std::string qdir = opt_.root + "/quarantine";
  int qfd = open_dir(qdir);
  if (qfd < 0) {
    return io_error(errno, "open " + qdir);
  }
  int e = move_to_quarantine(queue_fd_, qfd, id);
  if (e == 0 && (::fsync(qfd) != 0 || ::fsync(queue_fd_) != 0)) {
    e = errno;
  }
  ::close(qfd);
  if (e != 0) {
    return io_error(e, "quarantine " + id);
  }
  log::error("queue", id + ": moved to quarantine");
  return Ok{};
}

Result<void> FsMessageStore::sync_queue_dir() {
  if (::fsync(queue_fd_) != 0) {
    return io_error(errno, "fsync queue directory");
  }
  return Ok{};
}

StoreCounters FsMessageStore::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace bh::queue
