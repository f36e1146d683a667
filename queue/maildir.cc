#include "queue/maildir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "queue/queue_file.h"

namespace bh::queue {
namespace {

Error err(int e, const std::string& what) {
  if (e == ENOSPC || e == EDQUOT) {
    return transient_error("4.2.2", what + ": mailbox full");
  }
  return transient_error("4.3.0", what + ": " + std::strerror(e));
}

bool exists(const std::string& p) {
  struct stat st{};
  return ::lstat(p.c_str(), &st) == 0;
}

// cur/ names carry the Maildir info suffix ":2,<flags>" once a client has seen them.
bool exists_in_cur(const std::string& cur, const std::string& name) {
  DIR* d = ::opendir(cur.c_str());
  if (d == nullptr) {
    return false;
  }
  bool found = false;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n.size() >= name.size() && n.compare(0, name.size(), name) == 0 &&
        (n.size() == name.size() || n[name.size()] == ':')) {
      found = true;
      break;
    }
  }
  ::closedir(d);
  return found;
}

// Mailbox names come from the directory; refuse anything that could leave the root.
bool safe_mailbox(const std::string& m) {
  if (m.empty() || m.size() > 255 || m == "." || m == ".." || m.front() == '.') {
    return false;
  }
  for (char c : m) {
    if (c == '/' || c == '\0' || c == '\n' || c == '\r') {
      return false;
    }
  }
  return true;
}

bool write_all(int fd, std::string_view data, int& e) {
  while (!data.empty()) {
    ssize_t w = ::write(fd, data.data(), data.size());
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      e = errno;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(w));
  }
  return true;
}

}  // namespace

MaildirDeliverer::MaildirDeliverer(std::string root, std::string hostname)
    : root_(std::move(root)), hostname_(std::move(hostname)) {
  for (char& c : hostname_) {
    if (c == '/' || c == ':') {
      c = '_';  // Maildir reserves these in the host part
    }
  }
  if (hostname_.empty()) {
    hostname_ = "localhost";
  }
}

MaildirDeliverer::~MaildirDeliverer() {
  if (root_fd_ >= 0) {
    ::close(root_fd_);
  }
}

std::string MaildirDeliverer::name_for(const std::string& queue_id, const std::string& mailbox) const {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a of the mailbox
  for (unsigned char c : mailbox) {
    h = (h ^ c) * 1099511628211ull;
  }
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return queue_id + "." + buf + "." + hostname_;
}

Result<void> MaildirDeliverer::ensure_root() {
  if (root_fd_ >= 0) {
    return Ok{};
  }
  if (::mkdir(root_.c_str(), 0700) != 0 && errno != EEXIST) {
    return err(errno, "mkdir " + root_);
  }
  root_fd_ = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd_ < 0) {
    return err(errno, "open " + root_);
  }
  return Ok{};
}

UnnamedFile& UnnamedFile::operator=(UnnamedFile&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = o.fd_;
    open_count_ = o.open_count_;
    o.fd_ = -1;
  }
  return *this;
}

void UnnamedFile::reset() {
  if (fd_ >= 0) {
    ::close(fd_);
    --*open_count_;
    fd_ = -1;
  }
}

Result<void> MaildirDeliverer::ensure_folders(const std::string& mailbox_dir) {
  if (!ready_.contains(mailbox_dir)) {
    for (const std::string& d : {mailbox_dir, mailbox_dir + "/tmp", mailbox_dir + "/new", mailbox_dir + "/cur"}) {
      if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) {
        return err(errno, "mkdir " + d);
      }
    }
    ready_.insert(mailbox_dir);
  }
  return Ok{};
}

Result<int> MaildirDeliverer::create_tmp(StagedCopy& c) {
  const std::string name = c.new_path.substr(c.new_path.rfind('/') + 1);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (auto r = ensure_folders(c.mailbox_dir); !r.ok()) {
      return r.error();
    }
    if (unnamed_supported_ && unnamed_open_ < kMaxUnnamed) {
      const std::string dir = c.mailbox_dir + "/new";
      int out = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
      if (out >= 0) {
        c.tmp_path.clear();
        c.unnamed = UnnamedFile(out, &unnamed_open_);
        return out;
      }
      if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
        unnamed_supported_ = false;  // this file system: named temp files from now on
      } else if (errno == ENOENT) {
        ready_.erase(c.mailbox_dir);  // the folders went away (an operator removed them)
        continue;
      } else {
        return err(errno, "create a file in " + dir);
      }
    }
    c.tmp_path = c.mailbox_dir + "/tmp/" + name;
    // O_TRUNC: a leftover of an earlier, unfinished attempt has the same name.
    int out = ::open(c.tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out >= 0) {
      return out;
    }
    if (errno != ENOENT) {
      break;
    }
    ready_.erase(c.mailbox_dir);
  }
  return err(errno, "create " + (c.tmp_path.empty() ? c.mailbox_dir + "/new" : c.tmp_path));
}

Result<StagedCopy> MaildirDeliverer::stage_with(const std::string& queue_id, const std::string& mailbox,
                                                bool may_exist, const BodyWriter& write_body) {
  if (!safe_mailbox(mailbox)) {
    return permanent_error("5.1.1", "invalid mailbox name");
  }
  // Before any byte is written: the syncfs descriptor must predate the writes.
  if (auto r = ensure_root(); !r.ok()) {
    return r.error();
  }
  StagedCopy c;
  c.mailbox_dir = root_ + "/" + mailbox;
  std::string name = name_for(queue_id, mailbox);
  c.new_path = c.mailbox_dir + "/new/" + name;
  // A copy never attempted before cannot exist; publish() would still refuse to replace
  // one (EEXIST counts as delivered).
  if (may_exist && (exists(c.new_path) || exists_in_cur(c.mailbox_dir + "/cur", name))) {
    c.already_delivered = true;
    return c;
  }
  auto out = create_tmp(c);
  if (!out.ok()) {
    return out.error();
  }
  if (c.unnamed.fd() >= 0) {
    // Stays open until publish() has named it (write errors also show at the syncfs).
    auto copied = write_body(*out, c.new_path);
    if (!copied.ok()) {
      return copied.error();  // the unnamed file goes with c
    }
    return c;
  }
  auto copied = write_body(*out, c.tmp_path);
  if (::close(*out) != 0 && copied.ok()) {
    copied = err(errno, "close " + c.tmp_path);
  }
  if (!copied.ok()) {
    ::unlink(c.tmp_path.c_str());
    return copied.error();
  }
  return c;
}

Result<StagedCopy> MaildirDeliverer::stage(const std::string& source, std::uint64_t offset,
                                           std::uint64_t length, const std::string& queue_id,
                                           const std::string& mailbox, bool may_exist) {
  return stage_with(queue_id, mailbox, may_exist, [&](int fd, const std::string& path) {
    int failure = 0;
    StoredMessage m;
    m.body_offset = offset;
    m.body_length = length;
    return read_queue_body(source, m, [&](std::string_view chunk) -> Result<void> {
      if (!write_all(fd, chunk, failure)) {
        return err(failure, "write " + path);
      }
      return Ok{};
    });
  });
}

Result<StagedCopy> MaildirDeliverer::stage_bytes(std::string_view body, const std::string& queue_id,
                                                 const std::string& mailbox, bool may_exist) {
  return stage_with(queue_id, mailbox, may_exist, [&](int fd, const std::string& path) -> Result<void> {
    int failure = 0;
    if (!write_all(fd, body, failure)) {
      return err(failure, "write " + path);
    }
    return Ok{};
  });
}

Result<void> MaildirDeliverer::publish(const StagedCopy& c) {
  if (c.already_delivered) {
    return Ok{};
  }
  // Never replace an existing name: EEXIST means an earlier attempt delivered this copy.
  if (c.unnamed.fd() >= 0) {
    const std::string proc = "/proc/self/fd/" + std::to_string(c.unnamed.fd());
    int r = ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, c.new_path.c_str(), AT_SYMLINK_FOLLOW);
    if (r != 0 && errno == ENOENT) {  // no /proc: AT_EMPTY_PATH (needs CAP_DAC_READ_SEARCH)
      r = ::linkat(c.unnamed.fd(), "", AT_FDCWD, c.new_path.c_str(), AT_EMPTY_PATH);
    }
    if (r == 0 || errno == EEXIST) {
      return Ok{};
    }
    return err(errno, "link " + c.new_path);
  }
  if (::renameat2(AT_FDCWD, c.tmp_path.c_str(), AT_FDCWD, c.new_path.c_str(), RENAME_NOREPLACE) == 0) {
    return Ok{};
  }
  if (errno != EINVAL && errno != ENOSYS) {
    int e = errno;
    if (e == EEXIST) {
      ::unlink(c.tmp_path.c_str());
      return Ok{};
    }
    return err(e, "rename " + c.new_path);
  }
  // A file system without RENAME_NOREPLACE: link(2) never replaces either.
  if (::link(c.tmp_path.c_str(), c.new_path.c_str()) != 0 && errno != EEXIST) {
    return err(errno, "link " + c.new_path);
  }
  ::unlink(c.tmp_path.c_str());
  return Ok{};
}

Result<void> MaildirDeliverer::sync() {
  if (auto r = ensure_root(); !r.ok()) {
    return r;
  }
  if (::syncfs(root_fd_) != 0) {
    return err(errno, "syncfs " + root_);
  }
  return Ok{};
}

Result<StagedCopy> MaildirDeliverer::deliver(const std::string& source, std::uint64_t offset,
                                             std::uint64_t length, const std::string& queue_id,
                                             const std::string& mailbox) {
  auto c = stage(source, offset, length, queue_id, mailbox);
  if (!c.ok() || c->already_delivered) {
    return c;
  }
  if (auto r = sync(); !r.ok()) {
    return r.error();
  }
  if (auto r = publish(*c); !r.ok()) {
    return r.error();
  }
  if (auto r = sync(); !r.ok()) {
    return r.error();
  }
  return c;
}

}  // namespace bh::queue
