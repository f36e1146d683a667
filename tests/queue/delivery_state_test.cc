// The delivery state record: round trip of every field, hostile text in results, and a
// decoder that refuses truncated, damaged or oversized input instead of guessing.

#include "queue/delivery_state.h"

#include <gtest/gtest.h>

#include "tests/queue/queue_test_util.h"

namespace bh::queue {
namespace {

DeliveryState sample_state() {
  DeliveryState s;
  s.attempts = 4;
  s.first_attempt_unix = 1700000000;
  s.next_attempt_unix = 1700000600;
  s.delay_notice_sent = true;
  s.recipients.push_back({0, RecipientState::kDelivered, "2.0.0 relayed to mx [192.0.2.1]: 250 ok"});
  s.recipients.push_back({2, RecipientState::kPending, std::string("4.2.0 odd\r\nbytes %\0\x7f end", 25)});
  s.recipients.push_back({3, RecipientState::kFailed, ""});
  return s;
}

TEST(DeliveryState, RoundTripsEveryField) {
  auto s = sample_state();
  auto text = encode_delivery_state(s);
  EXPECT_EQ(text.find('\r'), std::string::npos);
  auto d = decode_delivery_state(text);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->attempts, 4u);
  EXPECT_EQ(d->first_attempt_unix, 1700000000);
  EXPECT_EQ(d->next_attempt_unix, 1700000600);
  EXPECT_TRUE(d->delay_notice_sent);
  EXPECT_FALSE(d->frozen);
  ASSERT_EQ(d->recipients.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(d->recipients[i].index, s.recipients[i].index);
    EXPECT_EQ(d->recipients[i].state, s.recipients[i].state);
    EXPECT_EQ(d->recipients[i].last_result, s.recipients[i].last_result);
  }
}

TEST(DeliveryState, EveryTruncationAndDamageIsRefused) {
  auto text = encode_delivery_state(sample_state());
  for (std::size_t n = 0; n < text.size(); ++n) {
    EXPECT_FALSE(decode_delivery_state(text.substr(0, n)).ok()) << "cut at " << n;
  }
  for (std::string bad : {"BHQS 2\nend\n", "BHQS 1\nattempts x\nend\n", "BHQS 1\nrcpt 1 9 x\nend\n",
                          "BHQS 1\nrcpt 1 1 %4\nend\n", "BHQS 1\nmystery 1\nend\n",
                          "BHQS 1\nend\nattempts 1\n", "BHQS 1\nattempts 99999999999999999999\nend\n"}) {
    EXPECT_FALSE(decode_delivery_state(bad).ok()) << bad;
  }
  EXPECT_FALSE(decode_delivery_state(std::string(kMaxDeliveryStateBytes + 1, 'x')).ok());
}

TEST(DeliveryState, AppliesToTheEnvelopeOnlyWithinItsRecipients) {
  Envelope e = testing::sample(4);
  auto s = sample_state();
  ASSERT_TRUE(apply_delivery_state(s, e).ok());
  EXPECT_EQ(e.recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(e.recipients[1].state, RecipientState::kPending);
  EXPECT_EQ(e.recipients[3].state, RecipientState::kFailed);
  auto back = recipient_states(e);
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[1].index, 2u);
  Envelope small = testing::sample(2);
  EXPECT_FALSE(apply_delivery_state(s, small).ok());
  EXPECT_EQ(small.recipients[0].state, RecipientState::kPending);  // nothing half-applied
}

TEST(DeliveryState, RecipientsAddedByTheCategorizerRoundTripAndAreAppendedOnce) {
  DeliveryState s;
  Recipient a;
  a.address = "carol@example.org";
  a.mailbox = "carol_40example.org";
  a.orcpt = "rfc822;all staff@example.org";
  a.notify = kNotifyFailure | kNotifySuccess;
  a.added = true;
  Recipient b;
  b.address = "x@partner.example";  // relayed: no mailbox, and no orcpt
  b.added = true;
  Recipient c;
  c.address = "erin@example.org";  // homed on another node
  c.home_server = "node5";
  c.added = true;
  s.added = {a, b, c};
  s.recipients.push_back({0, RecipientState::kDelivered, "2.1.5 expanded"});
  s.recipients.push_back({3, RecipientState::kFailed, "5.1.1 x"});
  auto d = decode_delivery_state(encode_delivery_state(s));
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->added.size(), 3u);
  EXPECT_EQ(d->added[2].home_server, "node5");
  EXPECT_TRUE(d->added[2].mailbox.empty());
  EXPECT_TRUE(d->added[0].home_server.empty());
  EXPECT_EQ(d->added[0].address, a.address);
  EXPECT_EQ(d->added[0].mailbox, a.mailbox);
  EXPECT_EQ(d->added[0].orcpt, a.orcpt);
  EXPECT_EQ(d->added[0].notify, a.notify);
  EXPECT_TRUE(d->added[1].mailbox.empty());
  EXPECT_TRUE(d->added[1].orcpt.empty());
  EXPECT_TRUE(d->added[1].added);

  Envelope e = testing::sample(2);
  ASSERT_TRUE(apply_delivery_state(*d, e).ok());
  ASSERT_EQ(e.recipients.size(), 5u);
  EXPECT_EQ(e.recipients[2].address, "carol@example.org");
  EXPECT_EQ(e.recipients[3].state, RecipientState::kFailed);
  EXPECT_EQ(e.recipients[4].home_server, "node5");
  EXPECT_EQ(added_recipients(e).size(), 3u);
  ASSERT_TRUE(apply_delivery_state(*d, e).ok());  // already there: not appended twice
  EXPECT_EQ(e.recipients.size(), 5u);

  for (std::string bad : {"BHQS 1\nadded 0 =a =b\nend\n", "BHQS 1\nadded 0 a =b =c\nend\n",
                          "BHQS 1\nadded 0 = =b =c\nend\n", "BHQS 1\nadded 999 =a =b =c\nend\n",
                          "BHQS 1\nadded 0 =a%0D =b =c\nend\n", "BHQS 1\nadded 0 =a =b =c =\nend\n",
                          "BHQS 1\nadded 0 =a =b =c =d =e\nend\n"}) {
    EXPECT_FALSE(decode_delivery_state(bad).ok()) << bad;
  }
  DeliveryState wrong;
  wrong.added = {a};
  wrong.recipients.push_back({5, RecipientState::kDelivered, ""});
  Envelope small = testing::sample(2);
  EXPECT_FALSE(apply_delivery_state(wrong, small).ok());
  EXPECT_EQ(small.recipients.size(), 2u);  // nothing half-applied
}

TEST(DeliveryState, StoreSavesLoadsAndForgetsItBesideTheQueueFile) {
  testing::TempDir t;
  std::string id;
  {
    testing::Store s(t.path());
    id = s.put("x\r\n").value();
    EXPECT_FALSE(s.store.load_state(id).value().has_value());
    ASSERT_TRUE(s.store.save_state(id, sample_state()).ok());
    auto l = s.store.load_state(id);
    ASSERT_TRUE(l.ok());
    ASSERT_TRUE(l->has_value());
    EXPECT_EQ((*l)->attempts, 4u);
    testing::spit(t.path() + "/state/ORPHAN", "BHQS 1\nend\n");
    testing::spit(t.path() + "/state/.half-written", "BHQS");
  }
  testing::Store s(t.path());
  auto rep = s.store.recover();
  EXPECT_EQ(rep.ready, std::vector<std::string>{id});
  EXPECT_EQ(rep.orphan_states, 2u);
  ASSERT_TRUE(s.store.load_state(id).value().has_value());
  ASSERT_TRUE(s.store.remove(id).ok());
  EXPECT_EQ(testing::count(t.path() + "/state"), 0u);
  testing::spit(t.path() + "/state/" + id, "garbage");
  EXPECT_FALSE(s.store.load_state(id).ok());
}

}  // namespace
}  // namespace bh::queue
