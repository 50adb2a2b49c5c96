// The deterministic test cluster of harness.h: boots cores over in-memory
// logs, carries out each Ready in the documented order and delivers
// messages under the test's control.
#include "harness.h"

#include <algorithm>
#include <limits>

#include <catch2/catch.hpp>

#include "confman/raft/membership.h"

namespace confman::raft::testing {
namespace {

// Generous bounds: scenarios in these tests need far fewer.
constexpr int kMaxReadiesPerInput = 10000;

std::vector<MemberId> Sorted(std::vector<MemberId> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace

absl::StatusOr<Term> FailingReader::TermAt(Index index) const {
  if (!failure_.ok()) return failure_;
  return log_->TermAt(index);
}

absl::StatusOr<std::vector<Entry>> FailingReader::Entries(
    Index lo, Index hi, uint64_t max_bytes) const {
  if (!failure_.ok()) return failure_;
  return log_->Entries(lo, hi, max_bytes);
}

CoreOptions TestOptions() {
  CoreOptions options;
  options.election_timeout_ticks = 10;
  options.heartbeat_interval_ticks = 1;
  return options;
}

Cluster::Cluster(ClusterConfig config) {
  Membership membership;
  membership.voters = Sorted(config.voters);
  membership.voters_outgoing = Sorted(config.voters_outgoing);
  membership.learners = Sorted(config.learners);
  std::set<MemberId> everyone(config.voters.begin(), config.voters.end());
  everyone.insert(config.voters_outgoing.begin(), config.voters_outgoing.end());
  everyone.insert(config.learners.begin(), config.learners.end());
  everyone.insert(config.outsiders.begin(), config.outsiders.end());
  for (MemberId id : everyone) AddMember(id, membership, config.options);
}

Cluster::Cluster(int voter_count, CoreOptions options)
    : Cluster([&] {
        ClusterConfig config;
        for (int i = 1; i <= voter_count; ++i) config.voters.push_back(i);
        config.options = options;
        return config;
      }()) {}

Member& Cluster::AddMember(MemberId id, const Membership& membership,
                           const CoreOptions& base) {
  Member& m = members_[id];
  m.id = id;
  m.options = base;
  m.options.id = id;
  m.options.random_seed = base.random_seed * 1000003 + id;
  m.initial_membership = membership;
  m.applied_membership = membership;
  Boot(m);
  return m;
}

void Cluster::Boot(Member& m) {
  BootState boot;
  boot.hard_state = m.log.hard_state();
  // Entries the state machine applied were committed, even if the hard
  // state recording that was still waiting to be written.
  boot.hard_state.commit = std::max(boot.hard_state.commit, m.applied_index);
  boot.membership = m.applied_membership;
  boot.membership_index = m.applied_membership_index;
  boot.applied = m.applied_index;
  auto core = Core::Create(m.options, boot, &m.reader);
  INFO("booting member " << m.id << ": " << core.status().ToString());
  REQUIRE(core.ok());
  m.core = std::move(*core);
  HandleReady(m.id);
}

Member& Cluster::member(MemberId id) {
  auto it = members_.find(id);
  INFO("no member " << id << " in the test cluster");
  REQUIRE(it != members_.end());
  return it->second;
}

std::vector<MemberId> Cluster::ids() const {
  std::vector<MemberId> out;
  for (const auto& [id, m] : members_) out.push_back(id);
  return out;
}

void Cluster::Tick(MemberId id) {
  core(id).Tick();
  HandleReady(id);
}

void Cluster::Run(int ticks) {
  for (int t = 0; t < ticks; ++t) {
    for (auto& [id, m] : members_) Tick(id);
    Settle();
  }
}

bool Cluster::LinkUp(const Message& message) const {
  if (isolated_.count(message.from) || isolated_.count(message.to)) {
    return false;
  }
  if (cut_links_.count({message.from, message.to})) return false;
  for (const auto& rule : drop_rules_) {
    if (rule(message)) return false;
  }
  return members_.count(message.to) > 0;
}

void Cluster::Send(Message message) {
  history_.push_back(message);
  if (LinkUp(message)) queue_.push_back(std::move(message));
}

bool Cluster::DeliverOne() {
  if (queue_.empty()) return false;
  Message message = std::move(queue_.front());
  queue_.pop_front();
  Deliver(message);
  return true;
}

void Cluster::Deliver(const Message& message) {
  if (!LinkUp(message)) return;
  core(message.to).Step(message);
  HandleReady(message.to);
}

int Cluster::Settle(int max_messages) {
  int delivered = 0;
  while (!queue_.empty()) {
    INFO("the cluster kept exchanging messages past the bound");
    REQUIRE(delivered < max_messages);
    DeliverOne();
    ++delivered;
  }
  return delivered;
}

std::vector<Message> Cluster::SettleHolding(
    const std::function<bool(const Message&)>& hold) {
  std::vector<Message> held;
  for (int delivered = 0;; ++delivered) {
    for (Message& message : Take(hold)) held.push_back(std::move(message));
    if (queue_.empty()) break;
    INFO("the cluster kept exchanging messages past the bound");
    REQUIRE(delivered < 100000);
    DeliverOne();
  }
  return held;
}

std::vector<Message> Cluster::Take(
    const std::function<bool(const Message&)>& match) {
  std::vector<Message> taken;
  std::deque<Message> kept;
  for (Message& message : queue_) {
    if (match(message)) {
      taken.push_back(std::move(message));
    } else {
      kept.push_back(std::move(message));
    }
  }
  queue_ = std::move(kept);
  return taken;
}

int Cluster::CountSent(
    const std::function<bool(const Message&)>& match) const {
  return static_cast<int>(
      std::count_if(history_.begin(), history_.end(), match));
}

int Cluster::CountQueued(
    const std::function<bool(const Message&)>& match) const {
  return static_cast<int>(std::count_if(queue_.begin(), queue_.end(), match));
}

void Cluster::Isolate(MemberId id) { isolated_.insert(id); }

void Cluster::CutLink(MemberId from, MemberId to) {
  cut_links_.insert({from, to});
}

void Cluster::DropWhere(std::function<bool(const Message&)> match) {
  drop_rules_.push_back(std::move(match));
}

void Cluster::Heal() {
  isolated_.clear();
  cut_links_.clear();
  drop_rules_.clear();
}

void Cluster::HoldApplyReports(MemberId id) {
  member(id).hold_apply_reports = true;
}

void Cluster::ReleaseApplyReports(MemberId id) {
  Member& m = member(id);
  m.hold_apply_reports = false;
  m.core->ReportApplied(m.applied_index);
  HandleReady(id);
}

void Cluster::HoldSnapshotInstalls(MemberId id) {
  member(id).hold_install_reports = true;
}

void Cluster::ReleaseSnapshotInstalls(MemberId id) {
  Member& m = member(id);
  m.hold_install_reports = false;
  for (const SnapshotMeta& meta : std::exchange(m.unreported_installs, {})) {
    m.core->ReportSnapshotInstalled(meta);
    HandleReady(id);
  }
}

void Cluster::HoldDurability(MemberId id) { member(id).hold_durability = true; }

void Cluster::ReleaseDurability(MemberId id) {
  Member& m = member(id);
  m.hold_durability = false;
  while (!m.pending_writes.empty()) {
    PendingWrite write = std::move(m.pending_writes.front());
    m.pending_writes.pop_front();
    WriteDurably(m, std::move(write));
  }
  HandleReady(id);
}

void Cluster::WriteDurably(Member& m, PendingWrite write) {
  if (write.reset) m.log.ResetToSnapshot(write.reset->index, write.reset->term);
  if (write.hard_state) m.log.set_hard_state(*write.hard_state);
  if (!write.entries.empty()) {
    absl::Status appended = m.log.Append(write.entries);
    INFO("member " << m.id << " log append: " << appended.ToString());
    REQUIRE(appended.ok());
    m.core->ReportDurable(write.entries.back().index,
                          write.entries.back().term);
  } else if (write.reset) {
    m.core->ReportDurable(write.reset->index, write.reset->term);
  }
  for (Message& message : write.messages_after_persist) {
    Send(std::move(message));
  }
}

void Cluster::HandleReady(MemberId id) {
  Member& m = member(id);
  for (int i = 0; m.core->HasReady(); ++i) {
    INFO("member " << id << " keeps producing Ready batches");
    REQUIRE(i < kMaxReadiesPerInput);
    HandleOneReady(m, m.core->TakeReady());
  }
  const absl::Status invariants = m.core->CheckInvariants();
  INFO("member " << id << " invariants: " << invariants.ToString());
  REQUIRE(invariants.ok());
}

// Follows the order documented at raft::Ready.
void Cluster::HandleOneReady(Member& m, Ready ready) {
  if (ready.snapshot_to_install) InstallSnapshot(m, *ready.snapshot_to_install);
  for (Message& message : ready.messages) Send(std::move(message));
  m.pending_writes.push_back(PendingWrite{ready.snapshot_to_install,
                                          std::move(ready.hard_state),
                                          std::move(ready.entries),
                                          std::move(ready.messages_after_persist)});
  while (!m.hold_durability && !m.pending_writes.empty()) {
    PendingWrite write = std::move(m.pending_writes.front());
    m.pending_writes.pop_front();
    WriteDurably(m, std::move(write));
  }
  Apply(m, ready.committed_entries);
  for (ReadState& read : ready.read_states) {
    m.read_states.push_back(std::move(read));
  }
  for (const SnapshotSend& send : ready.snapshots_to_send) {
    m.snapshot_requests.push_back(send);
  }
}

void Cluster::Apply(Member& m, const std::vector<Entry>& entries) {
  if (!entries.empty()) {
    uint64_t bytes = 0;
    for (const Entry& entry : entries) bytes += entry.data.size();
    m.apply_batch_bytes.push_back(bytes);
    m.apply_batch_sizes.push_back(entries.size());
  }
  for (const Entry& entry : entries) {
    INFO("member " << m.id << " applied " << m.applied_index
                   << " and was handed entry " << entry.index);
    REQUIRE(entry.index == m.applied_index + 1);
    m.applied.push_back(entry);
    m.applied_index = entry.index;
    if (entry.type == EntryType::kMembership) {
      auto decoded = DecodeMembership(entry.data);
      INFO("membership entry " << entry.index << ": "
                               << decoded.status().ToString());
      REQUIRE(decoded.ok());
      m.applied_membership = *decoded;
      m.applied_membership_index = entry.index;
    }
  }
  if (!entries.empty() && !m.hold_apply_reports) {
    m.core->ReportApplied(m.applied_index);
  }
}

void Cluster::InstallSnapshot(Member& m, const SnapshotMeta& meta) {
  auto staged = staged_snapshots_.find(m.id);
  INFO("member " << m.id << " was told to install a snapshot never staged");
  REQUIRE(staged != staged_snapshots_.end());
  std::vector<Entry> state = staged->second;
  state.erase(std::remove_if(state.begin(), state.end(),
                             [&](const Entry& e) { return e.index > meta.index; }),
              state.end());
  m.applied = std::move(state);
  m.applied_index = meta.index;
  m.applied_membership = meta.membership;
  m.applied_membership_index = meta.index;
  m.installed_snapshots.push_back(meta);
  if (m.hold_install_reports) {
    m.unreported_installs.push_back(meta);
  } else {
    m.core->ReportSnapshotInstalled(meta);
  }
}

void Cluster::CompleteSnapshot(MemberId from, MemberId to, bool ok) {
  Member& sender = member(from);
  Index sent_index = 0;
  if (ok) {
    SnapshotMeta meta;
    meta.index = sender.applied_index;
    auto term = sender.log.TermAt(meta.index);
    INFO("snapshot source term lookup: " << term.status().ToString());
    REQUIRE(term.ok());
    meta.term = *term;
    meta.membership = sender.applied_membership;
    staged_snapshots_[to] = sender.applied;

    Message message;
    message.type = MessageType::kSnapshot;
    message.from = from;
    message.to = to;
    message.term = sender.core->term();
    message.snapshot = meta;
    sent_index = meta.index;
    Deliver(message);
  }
  sender.core->ReportSnapshotSent(to, ok, sent_index);
  HandleReady(from);
}

void Cluster::FailReads(MemberId id, absl::Status failure) {
  member(id).reader.set_failure(std::move(failure));
}

void Cluster::Preload(MemberId id, const std::vector<Term>& terms, Term term) {
  Member& m = member(id);
  m.core.reset();
  m.log = MemoryLog();
  std::vector<Entry> entries;
  for (size_t i = 0; i < terms.size(); ++i) {
    Entry entry;
    entry.index = i + 1;
    entry.term = terms[i];
    // Same index and term, same data: preloaded logs obey Log Matching.
    entry.data = "i" + std::to_string(i + 1) + "-t" + std::to_string(terms[i]);
    entries.push_back(std::move(entry));
  }
  REQUIRE(m.log.Append(entries).ok());
  HardState hard_state;
  hard_state.term = term;
  m.log.set_hard_state(hard_state);
  ForgetStateMachine(id);
  Boot(m);
}

void Cluster::ForgetStateMachine(MemberId id) {
  Member& m = member(id);
  m.applied.clear();
  m.applied_index = 0;
  m.applied_membership = m.initial_membership;
  m.applied_membership_index = 0;
}

void Cluster::Restart(MemberId id,
                      const std::function<void(CoreOptions&)>& adjust) {
  Member& m = member(id);
  m.core.reset();
  m.pending_writes.clear();
  m.hold_durability = false;
  if (adjust) adjust(m.options);
  Boot(m);
}

absl::StatusOr<ProposalPosition> Cluster::Propose(
    MemberId id, std::vector<std::string> payloads) {
  auto position = core(id).Propose(std::move(payloads));
  HandleReady(id);
  return position;
}

absl::Status Cluster::ReadIndex(MemberId id, std::string context,
                                ReadMode mode) {
  absl::Status status = core(id).ReadIndex(std::move(context), mode);
  HandleReady(id);
  return status;
}

absl::StatusOr<ProposalPosition> Cluster::ChangeMembership(
    MemberId id, MembershipChange::Kind kind, MemberId subject) {
  MembershipChange change;
  change.kind = kind;
  change.member = subject;
  auto position = core(id).ProposeMembershipChange(change);
  HandleReady(id);
  return position;
}

absl::Status Cluster::TransferLeadership(MemberId id, MemberId to) {
  absl::Status status = core(id).TransferLeadership(to);
  HandleReady(id);
  return status;
}

ProposalPosition Cluster::Replicate(MemberId leader,
                                   std::vector<std::string> payloads,
                                   int ticks) {
  auto position = Propose(leader, std::move(payloads));
  INFO("proposal on member " << leader << ": " << position.status().ToString());
  REQUIRE(position.ok());
  Settle();
  Run(ticks);
  return *position;
}

ProposalPosition Cluster::Reconfigure(MemberId leader,
                                     MembershipChange::Kind kind,
                                     MemberId subject, int ticks) {
  auto position = ChangeMembership(leader, kind, subject);
  INFO("membership change on member " << leader << ": "
                                      << position.status().ToString());
  REQUIRE(position.ok());
  Settle();
  Run(ticks);
  return *position;
}

void Cluster::StartElection(MemberId id) {
  Member& m = member(id);
  const int max_ticks = 2 * static_cast<int>(m.options.election_timeout_ticks);
  for (int t = 0; t < max_ticks && m.core->role() == Role::kFollower; ++t) {
    Tick(id);
  }
  INFO("member " << id << " never started an election");
  REQUIRE(m.core->role() != Role::kFollower);
}

void Cluster::Campaign(MemberId id, bool settle) {
  Member& m = member(id);
  const int max_ticks = 6 * static_cast<int>(m.options.election_timeout_ticks);
  for (int t = 0; t < max_ticks && m.core->role() != Role::kLeader; ++t) {
    Tick(id);
    while (m.core->role() != Role::kLeader && DeliverOne()) {
    }
  }
  INFO("member " << id << " campaigned but is " << RoleName(m.core->role()));
  REQUIRE(m.core->role() == Role::kLeader);
  if (settle) Settle();
}

void Cluster::ElectLeader(MemberId id) {
  Campaign(id, true);
  Run(1);
  REQUIRE(Leader() == id);
}

MemberId Cluster::Leader() {
  std::map<Term, MemberId> leaders;
  for (auto& [id, m] : members_) {
    if (m.core->role() != Role::kLeader) continue;
    auto [it, inserted] = leaders.emplace(m.core->term(), id);
    INFO("members " << it->second << " and " << id << " both lead term "
                    << m.core->term());
    REQUIRE(inserted);
  }
  return leaders.empty() ? kNoMember : leaders.rbegin()->second;
}

std::function<bool(const Message&)> OfType(MessageType type) {
  return [type](const Message& m) { return m.type == type; };
}

std::function<bool(const Message&)> OfTypeTo(MessageType type, MemberId to) {
  return [type, to](const Message& m) { return m.type == type && m.to == to; };
}

std::function<bool(const Message&)> OfTypeFrom(MessageType type,
                                               MemberId from) {
  return [type, from](const Message& m) {
    return m.type == type && m.from == from;
  };
}

MemberProgress ProgressOf(const Core& leader, MemberId id) {
  CoreStatus status = leader.Status();
  for (const MemberProgress& progress : status.progress) {
    if (progress.id == id) return progress;
  }
  FAIL("member " << leader.id() << " keeps no progress for member " << id);
  return {};
}

std::vector<std::string> Payloads(int count, size_t bytes_each) {
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    out.emplace_back(bytes_each, static_cast<char>('a' + i % 26));
  }
  return out;
}

std::vector<Entry> AllEntries(const MemoryLog& log) {
  auto entries = log.Entries(log.FirstIndex(), log.LastIndex() + 1,
                             std::numeric_limits<uint64_t>::max());
  REQUIRE(entries.ok());
  return *entries;
}

}  // namespace confman::raft::testing
