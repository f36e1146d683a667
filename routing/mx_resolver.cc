#include "routing/mx_resolver.h"

#include <algorithm>

#include "common/address.h"

namespace bh::routing {

namespace {

void add_address(std::vector<std::string>& list, const std::string& address) {
  if (list.size() < kMaxAddressesPerHost && std::find(list.begin(), list.end(), address) == list.end()) {
    list.push_back(address);
  }
}

}  // namespace

MxLookup::MxLookup(std::string_view domain, Random& random)
    : domain_(normalize_domain(domain)), random_(random) {}

void MxLookup::finish(Error error) {
  finished_ = true;
  error_ = std::move(error);
}

std::vector<DnsQuestion> MxLookup::start() {
  BH_CHECK(!started_);
  started_ = true;
  if (!is_valid_domain(domain_)) {
    finish(permanent_error("5.1.2", "\"" + domain_ + "\" is not a domain name"));
    return {};
  }
  pending_ = 1;
  return {DnsQuestion{domain_, DnsType::kMx}};
}

std::vector<DnsQuestion> MxLookup::on_answer(const DnsQuestion& question, const DnsAnswer& answer) {
  BH_CHECK(started_ && pending_ > 0);
  --pending_;
  if (finished_) {
    return {};
  }
  if (question.type == DnsType::kMx) {
    BH_CHECK(!mx_answered_);
    mx_answered_ = true;
    return on_mx(answer);
  }
  switch (answer.status) {
    case DnsAnswer::Status::kOk:
      for (auto& h : hosts_) {
        if (h.mx.host != question.name) {
          continue;
        }
        // Every record of the asked type in the answer: after a CNAME chain the owner
        // is the canonical name, not the one we asked for.
        for (const auto& rec : answer.reply.answers) {
          if (rec.type == question.type) {
            add_address(question.type == DnsType::kA ? h.v4 : h.v6, rec.address);
          }
        }
      }
      break;
    case DnsAnswer::Status::kNxDomain:
    case DnsAnswer::Status::kNoData:
      break;
    case DnsAnswer::Status::kFailed:
      if (address_failure_.empty()) {
        address_failure_ = question.name + ": " + answer.detail;
      }
      break;
  }
  return {};
}

std::vector<DnsQuestion> MxLookup::on_mx(const DnsAnswer& answer) {
  switch (answer.status) {
    case DnsAnswer::Status::kNxDomain:
      finish(permanent_error("5.1.2", "domain " + domain_ + " does not exist (NXDOMAIN)"));
      return {};
    case DnsAnswer::Status::kFailed:
      finish(transient_error("4.4.3", "MX lookup for " + domain_ + " failed: " + answer.detail));
      return {};
    case DnsAnswer::Status::kOk:
    case DnsAnswer::Status::kNoData:
      break;
  }
  std::vector<MxHost> mx;
  if (answer.status == DnsAnswer::Status::kOk) {
    for (const auto& rec : answer.reply.answers) {
      if (rec.type == DnsType::kMx) {
        mx.push_back(MxHost{rec.target, rec.preference, false, {}});
      }
    }
  }
  if (mx.empty()) {
    // RFC 5321 §5.1: no MX records, the domain itself is the implicit MX.
    implicit_ = true;
    hosts_.push_back(Host{MxHost{domain_, 0, true, {}}, {}, {}});
    return ask_addresses();
  }
  // RFC 7505 §3: "MX 0 ." says the domain accepts no mail. A "." next to real MX
  // records is a misconfiguration; it is ignored and the real ones are used.
  if (std::all_of(mx.begin(), mx.end(), [](const MxHost& h) { return h.host.empty(); })) {
    finish(permanent_error("5.1.10", "domain " + domain_ + " accepts no mail (null MX, RFC 7505)"));
    return {};
  }
  std::erase_if(mx, [](const MxHost& h) { return h.host.empty(); });
  // One entry per host, at its lowest preference.
  std::sort(mx.begin(), mx.end(), [](const MxHost& a, const MxHost& b) {
    return a.preference != b.preference ? a.preference < b.preference : a.host < b.host;
  });
  std::vector<MxHost> unique;
  for (auto& h : mx) {
    if (std::none_of(unique.begin(), unique.end(), [&](const MxHost& u) { return u.host == h.host; })) {
      unique.push_back(std::move(h));
    }
  }
  // RFC 5321 §5.1: hosts of equal preference in random order (Fisher-Yates per group).
  for (std::size_t begin = 0; begin < unique.size();) {
    std::size_t end = begin;
    while (end < unique.size() && unique[end].preference == unique[begin].preference) {
      ++end;
    }
    for (std::size_t i = end - begin; i > 1; --i) {
      std::size_t j = static_cast<std::size_t>(random_.next() % i);
      std::swap(unique[begin + i - 1], unique[begin + j]);
    }
    begin = end;
  }
  if (unique.size() > kMaxMxHosts) {
    unique.resize(kMaxMxHosts);
  }
  for (auto& h : unique) {
    Host host{std::move(h), {}, {}};
    // Addresses the server volunteered in the additional section save two queries.
    for (const auto& rec : answer.reply.additional) {
      if (rec.name == host.mx.host && (rec.type == DnsType::kA || rec.type == DnsType::kAaaa)) {
        add_address(rec.type == DnsType::kA ? host.v4 : host.v6, rec.address);
      }
    }
    hosts_.push_back(std::move(host));
  }
  return ask_addresses();
}

std::vector<DnsQuestion> MxLookup::ask_addresses() {
  std::vector<DnsQuestion> out;
  for (const auto& h : hosts_) {
    if (h.v4.empty() && h.v6.empty()) {
      out.push_back(DnsQuestion{h.mx.host, DnsType::kA});
      out.push_back(DnsQuestion{h.mx.host, DnsType::kAaaa});
    }
  }
  pending_ += out.size();
  return out;
}

Result<std::vector<MxHost>> MxLookup::result() const {
  BH_CHECK(done());
  if (finished_) {
    return error_;
  }
  std::vector<MxHost> out;
  for (const auto& h : hosts_) {
    MxHost mx = h.mx;
    for (const auto* list : {&h.v4, &h.v6}) {
      for (const auto& a : *list) {
        if (mx.addresses.size() < kMaxAddressesPerHost) {
          mx.addresses.push_back(a);
        }
      }
    }
    if (!mx.addresses.empty()) {
      out.push_back(std::move(mx));
    }
  }
  if (!out.empty()) {
    return out;
  }
  if (!address_failure_.empty()) {
    return transient_error("4.4.3", "no address for the mail hosts of " + domain_ + ": " + address_failure_);
  }
  if (implicit_) {
    return permanent_error("5.1.2", "domain " + domain_ + " has no MX and no A/AAAA records");
  }
  return permanent_error("5.4.4", "no MX host of " + domain_ + " has an address");
}

}  // namespace bh::routing
