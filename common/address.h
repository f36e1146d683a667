#pragma once
// Placeholder: replaced by the RFC 5321 mailbox parser.
namespace bh {}
