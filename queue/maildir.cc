#include "queue/maildir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

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
  return ::stat(p.c_str(), &st) == 0;
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

}  // namespace

MaildirDeliverer::MaildirDeliverer(std::string root, std::string hostname)
    : root_(std::move(root)), hostname_(std::move(hostname)) {
  for (char& c : hostname_) {
    if (c == '/' || c == ':') {
      c = '_';  // Maildir reserves these in the host part
    }
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

Result<StagedCopy> MaildirDeliverer::stage(const std::string& source, std::uint64_t offset,
                                           std::uint64_t length, const std::string& queue_id,
                                           const std::string& mailbox) {
  if (!safe_mailbox(mailbox)) {
    return permanent_error("5.1.1", "invalid mailbox name");
  }
  StagedCopy c;
  c.mailbox_dir = root_ + "/" + mailbox;
  std::string name = name_for(queue_id, mailbox);
  c.new_path = c.mailbox_dir + "/new/" + name;
  if (exists(c.new_path) || exists(c.mailbox_dir + "/cur/" + name) ||
      exists(c.mailbox_dir + "/cur/" + name + ":2,")) {
    c.already_delivered = true;
    return c;
  }
  for (const std::string& d : {root_, c.mailbox_dir, c.mailbox_dir + "/tmp",
                               c.mailbox_dir + "/new", c.mailbox_dir + "/cur"}) {
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) {
      return err(errno, "mkdir " + d);
    }
  }
  c.tmp_path = c.mailbox_dir + "/tmp/" + name;
  int in = ::open(source.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    return err(errno, "open " + source);
  }
  int out = ::open(c.tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) {
    int e = errno;
    ::close(in);
    return err(e, "create " + c.tmp_path);
  }
  std::vector<char> buf(64u << 10);
  auto off = static_cast<off_t>(offset);
  std::uint64_t left = length;
  int failure = 0;
  while (left > 0 && failure == 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size()));
    ssize_t got = ::pread(in, buf.data(), n, off);
    if (got <= 0) {
      failure = got < 0 ? errno : EIO;
      break;
    }
    const char* p = buf.data();
    auto rest = static_cast<std::size_t>(got);
    while (rest > 0) {
      ssize_t w = ::write(out, p, rest);
      if (w < 0) {
        if (errno == EINTR) {
          continue;
        }
        failure = errno;
        break;
      }
      p += w;
      rest -= static_cast<std::size_t>(w);
    }
    off += got;
    left -= static_cast<std::uint64_t>(got);
  }
  ::close(in);
  if (::close(out) != 0 && failure == 0) {
    failure = errno;
  }
  if (failure != 0) {
    ::unlink(c.tmp_path.c_str());
    return err(failure, "write " + c.tmp_path);
  }
  return c;
}

Result<void> MaildirDeliverer::publish(const StagedCopy& c) {
  if (c.already_delivered) {
    return Ok{};
  }
  if (::link(c.tmp_path.c_str(), c.new_path.c_str()) != 0 && errno != EEXIST) {
    int e = errno;
    return err(e, "link " + c.new_path);
  }
  ::unlink(c.tmp_path.c_str());
  return Ok{};
}

Result<void> MaildirDeliverer::sync() {
  int fd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return err(errno, "open " + root_);
  }
  int rc = ::syncfs(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) {
    return err(e, "syncfs " + root_);
  }
  return Ok{};
}

}  // namespace bh::queue
