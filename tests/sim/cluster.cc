// The simulated cluster (cluster.h): runs each member's core against its
// in-memory log and state machine, and carries messages, disk writes,
// crashes, snapshots and apply reports under seeded faults.
#include "cluster.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "confman/raft/membership.h"

namespace confman::sim {

using raft::Entry;
using raft::Index;
using raft::MemberId;
using raft::Message;
using raft::MessageType;
using raft::Term;

struct Cluster::DiskWrite {
  uint64_t durable_at = 0;
  std::optional<raft::SnapshotMeta> reset;  // Written before the rest.
  std::optional<raft::HardState> hard_state;
  std::vector<Entry> entries;
  std::vector<Message> messages_after_persist;
};

struct Cluster::Member {
  MemberId id = raft::kNoMember;
  bool up = true;
  // Bumped by every crash: packets remember the incarnations of both ends
  // and die with either.
  uint64_t incarnation = 0;
  uint64_t restart_at = 0;
  uint32_t tick_phase = 0;
  uint32_t tick_period = 10;  // Steps per tick of this member's clock.
  raft::MemoryLog log;
  StateMachine sm;
  std::unique_ptr<raft::Core> core;
  std::deque<DiskWrite> disk;
  // The state that arrived with the last kSnapshot message, until the core
  // asks to install it.
  std::optional<StateMachine> staged;
  // Installs taken by the state machine, not yet reported to the core.
  std::deque<std::pair<uint64_t, raft::SnapshotMeta>> install_reports;
  Term observed_leader_term = 0;
  std::map<std::string, Index> pending_reads;  // context -> required index
  // Applied entries not yet confirmed with ReportApplied, and when the
  // confirmation is due (nullopt: none pending).
  uint64_t unreported_bytes = 0;
  uint32_t unreported_nonempty_entries = 0;
  std::optional<uint64_t> report_applied_at;
};

struct Cluster::Packet {
  uint64_t deliver_at = 0;
  uint64_t seq = 0;
  Message message;
  uint64_t from_incarnation = 0;
  uint64_t to_incarnation = 0;
  // Set for a snapshot stream: the sender's state machine copy.
  std::optional<StateMachine> snapshot;
};

bool Cluster::PacketLater::operator()(const Packet& a, const Packet& b) const {
  return a.deliver_at != b.deliver_at ? a.deliver_at > b.deliver_at
                                      : a.seq > b.seq;
}

Cluster::Cluster(const ClusterConfig& config, Rng& rng, SafetyChecker& checker,
                 std::ostream* trace)
    : config_(config), rng_(rng), checker_(checker), trace_(trace) {
  const uint32_t total = config.voters + config.spares;
  if (total > kMaxMembers) {
    checker_.Fail(absl::StrCat("a simulated cluster holds at most ",
                               kMaxMembers, " members; ", total,
                               " were configured"));
    return;
  }
  raft::Membership initial;
  for (MemberId id = 1; id <= config.voters; ++id) initial.voters.push_back(id);
  for (MemberId id = 1; id <= total; ++id) {
    auto m = std::make_unique<Member>();
    m->id = id;
    m->tick_period =
        config.steps_per_tick +
        static_cast<uint32_t>(rng_.Below(config.tick_skew_steps + 1));
    m->tick_phase = static_cast<uint32_t>(rng_.Below(m->tick_period));
    if (id <= config.voters) m->sm.membership = initial;
    members_.push_back(std::move(m));
  }
}

Cluster::~Cluster() = default;

void Cluster::Trace(const Member& m, const std::string& what) const {
  if (trace_ != nullptr) *trace_ << "t=" << now_ << " m" << m.id << " " << what << "\n";
}

void Cluster::Boot() {
  for (auto& m : members_) StartCore(*m);
}

// A crash between a snapshot install and the durable reset of the log
// leaves a state machine ahead of the log; the log restarts from it, as the
// Node's open does.
void Cluster::AlignLogWithState(Member& m) {
  if (m.sm.applied == 0 || m.sm.applied < m.log.FirstIndex() - 1) return;
  const absl::StatusOr<Term> term = m.log.TermAt(m.sm.applied);
  if (term.ok() && *term == m.sm.applied_term) return;
  Trace(m, absl::StrCat("log reset to the state at ", m.sm.applied));
  m.log.ResetToSnapshot(m.sm.applied, m.sm.applied_term);
}

void Cluster::StartCore(Member& m) {
  AlignLogWithState(m);
  raft::CoreOptions options = config_.core;
  options.id = m.id;
  options.random_seed = rng_.Next() | 1;
  raft::BootState boot;
  boot.hard_state = m.log.hard_state();
  boot.membership = m.sm.membership;
  boot.membership_index = m.sm.membership_index;
  boot.applied = m.sm.applied;
  auto core = raft::Core::Create(options, boot, &m.log);
  if (!core.ok()) {
    checker_.Fail(absl::StrCat("member ", m.id, " failed to start: ",
                               core.status().ToString()));
    m.up = false;
    m.restart_at = UINT64_MAX;
    return;
  }
  m.core = std::move(*core);
  m.up = true;
  m.observed_leader_term = 0;
  Trace(m, absl::StrCat("start term=", boot.hard_state.term, " vote=",
                        boot.hard_state.vote, " commit=", boot.hard_state.commit,
                        " applied=", boot.applied, " log=[", m.log.FirstIndex(),
                        ",", m.log.LastIndex(), "]"));
  Drive(m);
}

bool Cluster::up(MemberId id) const { return member(id).up; }

const raft::Core* Cluster::core(MemberId id) const {
  const Member& m = member(id);
  return m.up ? m.core.get() : nullptr;
}

const StateMachine& Cluster::state_machine(MemberId id) const {
  return member(id).sm;
}

std::optional<MemberId> Cluster::Leader() const {
  std::optional<MemberId> best;
  Term best_term = 0;
  for (const auto& m : members_) {
    if (!m->up || m->core->role() != raft::Role::kLeader) continue;
    if (!best || m->core->term() > best_term) {
      best = m->id;
      best_term = m->core->term();
    }
  }
  return best;
}

std::vector<MemberId> Cluster::Leaders() const {
  std::vector<MemberId> leaders;
  for (const auto& m : members_) {
    if (m->up && m->core->role() == raft::Role::kLeader) leaders.push_back(m->id);
  }
  return leaders;
}

uint32_t Cluster::down_count() const {
  uint32_t n = 0;
  for (const auto& m : members_) n += m->up ? 0 : 1;
  return n;
}

// ---------------------------------------------------------------------------
// Time.

void Cluster::Advance(uint64_t now) {
  now_ = now;
  for (auto& m : members_) {
    if (!m->up && m->restart_at <= now_) StartCore(*m);
  }
  while (!network_.empty() && network_.front().deliver_at <= now_ &&
         !checker_.failed()) {
    std::pop_heap(network_.begin(), network_.end(), PacketLater());
    Packet packet = std::move(network_.back());
    network_.pop_back();
    if (packet.snapshot) {
      DeliverSnapshot(packet);
    } else {
      Deliver(packet);
    }
  }
  for (auto& m : members_) {
    bool wrote = false;
    while (m->up && !m->disk.empty() && m->disk.front().durable_at <= now_) {
      DiskWrite write = std::move(m->disk.front());
      m->disk.pop_front();
      CompleteWrite(*m, write);
      wrote = true;
    }
    if (wrote) Drive(*m);
  }
  for (auto& m : members_) {
    if (m->up && !m->install_reports.empty() &&
        m->install_reports.front().first <= now_) {
      ReportInstalls(*m);
      Drive(*m);
    }
  }
  for (auto& m : members_) {
    if (m->up && m->report_applied_at && *m->report_applied_at <= now_) {
      ReportApplied(*m);
      Drive(*m);
    }
  }
  for (auto& m : members_) {
    if (m->up && (now_ + m->tick_phase) % m->tick_period == 0) {
      m->core->Tick();
      Drive(*m);
    }
  }
}

void Cluster::FinishStep() {
  std::vector<SafetyChecker::LeaderView> leaders;
  for (auto& m : members_) {
    if (!m->up) continue;
    absl::Status status = m->core->CheckInvariants();
    if (!status.ok()) {
      checker_.Fail(absl::StrCat("member ", m->id,
                                 " CheckInvariants: ", status.ToString()));
    }
    if (m->core->role() == raft::Role::kLeader) {
      const Member* leader = m.get();
      leaders.push_back({m->id, m->core->term(), m->log.FirstIndex(),
                         [this, leader](Index i) { return LogicalTermAt(*leader, i); }});
    }
  }
  checker_.CheckNewlyApplied(leaders);
}

// ---------------------------------------------------------------------------
// The Ready loop, in the order core.h prescribes.

void Cluster::Drive(Member& m) {
  while (m.up && m.core->HasReady() && !checker_.failed()) {
    HandleReady(m, m.core->TakeReady());
  }
  if (m.up) ObserveLeadership(m);
}

void Cluster::ObserveLeadership(Member& m) {
  if (m.core->role() != raft::Role::kLeader) return;
  const Term term = m.core->term();
  if (term == m.observed_leader_term) return;
  m.observed_leader_term = term;
  Trace(m, absl::StrCat("leader of term ", term));
  checker_.ObserveLeader(m.id, term, m.log.FirstIndex(),
                         [this, &m](Index i) { return LogicalTermAt(m, i); });
}

void Cluster::HandleReady(Member& m, raft::Ready ready) {
  if (ready.snapshot_to_install) InstallSnapshot(m, *ready.snapshot_to_install);
  for (Message& message : ready.messages) Send(m, std::move(message));
  QueueWrite(m, ready);
  for (const Entry& entry : ready.committed_entries) {
    if (checker_.failed()) return;
    Apply(m, entry);
  }
  if (!ready.committed_entries.empty()) {
    CheckApplyWindow(m);
    ScheduleApplyReport(m);
  }
  for (const raft::ReadState& read : ready.read_states) ServeRead(m, read);
  for (const raft::SnapshotSend& send : ready.snapshots_to_send) {
    StartSnapshot(m, send.to);
  }
}

void Cluster::QueueWrite(Member& m, raft::Ready& ready) {
  if (!ready.snapshot_to_install && !ready.hard_state && ready.entries.empty()) {
    if (ready.messages_after_persist.empty()) return;
    if (m.disk.empty()) {  // Nothing to wait for.
      for (Message& message : ready.messages_after_persist) {
        Send(m, std::move(message));
      }
      return;
    }
  }
  DiskWrite write;
  uint64_t delay = rng_.Between(config_.disk.min_delay_steps,
                                config_.disk.max_delay_steps);
  if (rng_.Chance(config_.disk.slow_per_million)) {
    delay += rng_.Between(0, config_.disk.slow_extra_steps);
  }
  write.durable_at = now_ + delay;
  if (!m.disk.empty()) {
    write.durable_at = std::max(write.durable_at, m.disk.back().durable_at);
  }
  write.reset = ready.snapshot_to_install;
  write.hard_state = ready.hard_state;
  write.entries = std::move(ready.entries);
  write.messages_after_persist = std::move(ready.messages_after_persist);
  m.disk.push_back(std::move(write));
}

void Cluster::CompleteWrite(Member& m, DiskWrite& write) {
  if (!Persist(m, write)) return;
  if (!write.entries.empty()) {
    m.core->ReportDurable(write.entries.back().index, write.entries.back().term);
  } else if (write.reset) {
    m.core->ReportDurable(write.reset->index, write.reset->term);
  }
  for (Message& message : write.messages_after_persist) {
    Send(m, std::move(message));
  }
}

// Makes `write` durable in the member's MemoryLog, checking that it keeps
// every entry the member has durably recorded as committed: a restart
// replays (applied, commit] from this log.
bool Cluster::Persist(Member& m, const DiskWrite& write) {
  if (write.reset) m.log.ResetToSnapshot(write.reset->index, write.reset->term);
  const Index durable_commit = m.log.hard_state().commit;
  if (write.hard_state) {
    checker_.ObserveDurableHardState(m.id, m.log.hard_state(), *write.hard_state);
    m.log.set_hard_state(*write.hard_state);
  }
  if (!write.entries.empty()) {
    const Entry& front = write.entries.front();
    const Entry& back = write.entries.back();
    for (const Entry& e : write.entries) {
      if (e.index > durable_commit) break;
      if (e.index < m.log.FirstIndex() || e.index > m.log.LastIndex()) continue;
      const absl::StatusOr<Term> stored = m.log.TermAt(e.index);
      if (stored.ok() && *stored != e.term) {
        checker_.Fail(absl::StrCat(
            "committed entry lost: member ", m.id, " overwrote (index ",
            e.index, ", term ", *stored, ") with term ", e.term,
            " although its durable commit index is ", durable_commit));
        return false;
      }
    }
    absl::Status status = m.log.Append(write.entries);
    if (!status.ok()) {
      checker_.Fail(absl::StrCat("member ", m.id, " could not store Ready "
                                 "entries [", front.index, ", ", back.index,
                                 "]: ", status.ToString()));
      return false;
    }
    absl::StatusOr<Term> prev = m.log.TermAt(front.index - 1);
    checker_.ObserveDurableEntries(m.id, write.entries, prev.ok() ? *prev : 0);
  }
  if (m.log.hard_state().commit > m.log.LastIndex()) {
    checker_.Fail(absl::StrCat(
        "committed entry lost: member ", m.id, " durably recorded commit "
        "index ", m.log.hard_state().commit, " but its durable log ends at ",
        m.log.LastIndex()));
    return false;
  }
  return true;
}

void Cluster::InstallSnapshot(Member& m, const raft::SnapshotMeta& meta) {
  if (!m.staged || m.staged->applied != meta.index ||
      m.staged->applied_term != meta.term) {
    checker_.Fail(absl::StrCat("member ", m.id, " was asked to install a "
                               "snapshot at (index ", meta.index, ", term ",
                               meta.term, ") that was not the one received"));
    return;
  }
  if (meta.index <= m.sm.applied) {
    checker_.Fail(absl::StrCat("member ", m.id, " was asked to install a "
                               "snapshot at index ", meta.index,
                               " but has applied through ", m.sm.applied));
    return;
  }
  m.sm = std::move(*m.staged);
  m.staged.reset();
  checker_.ObserveSnapshotInstalled(m.id, m.sm);
  ++stats_.snapshots_installed;
  Trace(m, absl::StrCat("installed snapshot index=", meta.index, " term=",
                        meta.term));
  // The snapshot replaces whatever was applied and not yet reported.
  m.unreported_bytes = 0;
  m.unreported_nonempty_entries = 0;
  m.report_applied_at.reset();
  const uint64_t delay =
      rng_.Below(config_.snapshot.max_install_report_delay_steps + 1);
  m.install_reports.emplace_back(now_ + delay, meta);
  if (delay == 0) ReportInstalls(m);
}

// The caller drives the Ready this may produce.
void Cluster::ReportInstalls(Member& m) {
  while (!m.install_reports.empty() &&
         m.install_reports.front().first <= now_) {
    const raft::SnapshotMeta meta = m.install_reports.front().second;
    m.install_reports.pop_front();
    m.core->ReportSnapshotInstalled(meta);
  }
}

void Cluster::ScheduleApplyReport(Member& m) {
  if (m.report_applied_at || config_.apply.lose_reports) return;
  const uint32_t delay = static_cast<uint32_t>(
      rng_.Below(config_.apply.max_report_delay_steps + 1));
  if (delay == 0) return ReportApplied(m);
  m.report_applied_at = now_ + delay;
}

// The caller drives the Ready this may produce (Drive's own loop when the
// report follows the apply at once).
void Cluster::ReportApplied(Member& m) {
  m.report_applied_at.reset();
  m.unreported_bytes = 0;
  m.unreported_nonempty_entries = 0;
  ++stats_.apply_reports;
  m.core->ReportApplied(m.sm.applied);
}

// The driver's own count of what the core handed out beyond the last
// report must respect the window (one oversized entry may stand alone).
void Cluster::CheckApplyWindow(const Member& m) {
  const uint64_t window = config_.core.max_unapplied_bytes;
  stats_.max_unreported_bytes =
      std::max(stats_.max_unreported_bytes, m.unreported_bytes);
  if (window == 0 || m.unreported_nonempty_entries <= 1 ||
      m.unreported_bytes <= window) {
    return;
  }
  checker_.Fail(absl::StrCat("member ", m.id, " was handed ",
                             m.unreported_bytes, " bytes in ",
                             m.unreported_nonempty_entries,
                             " entries not yet reported applied, over the "
                             "apply window of ",
                             window));
}

void Cluster::Apply(Member& m, const Entry& entry) {
  absl::StatusOr<Term> durable = m.log.TermAt(entry.index);
  if (!durable.ok() || *durable != entry.term) {
    checker_.Fail(absl::StrCat("member ", m.id, " was handed committed entry "
                               "(index ", entry.index, ", term ", entry.term,
                               ") that is not durable in its log"));
    return;
  }
  checker_.ObserveApply(m.id, m.sm, entry, m.core->term());
  if (checker_.failed()) return;
  m.sm.applied = entry.index;
  m.sm.applied_term = entry.term;
  if (!entry.data.empty()) {
    m.unreported_bytes += entry.data.size();
    ++m.unreported_nonempty_entries;
  }
  m.sm.digest = ChainDigest(m.sm.digest, entry);
  if (entry.type == raft::EntryType::kMembership) {
    absl::StatusOr<raft::Membership> membership =
        raft::DecodeMembership(entry.data);
    if (!membership.ok()) {
      checker_.Fail(absl::StrCat("member ", m.id, " applied an undecodable "
                                 "membership entry at ", entry.index, ": ",
                                 membership.status().ToString()));
      return;
    }
    m.sm.membership = std::move(*membership);
    m.sm.membership_index = entry.index;
    ++stats_.membership_applied;
  }
}

void Cluster::ServeRead(Member& m, const raft::ReadState& read) {
  auto it = m.pending_reads.find(read.context);
  if (it == m.pending_reads.end()) return;  // A duplicate answer.
  checker_.ObserveReadState(m.id, read.context, it->second, read.index);
  m.pending_reads.erase(it);
  ++stats_.reads_checked;
}

void Cluster::StartSnapshot(Member& m, MemberId to) {
  if (!ValidPeer(m, to)) return;
  Packet packet;
  packet.message.type = MessageType::kSnapshot;
  packet.message.from = m.id;
  packet.message.to = to;
  packet.message.term = m.core->term();
  packet.message.snapshot =
      raft::SnapshotMeta{m.sm.applied, m.sm.applied_term, m.sm.membership};
  packet.snapshot = m.sm;
  ++stats_.snapshots_sent;
  Trace(m, absl::StrCat("sends snapshot index=", m.sm.applied, " to m", to));
  Schedule(std::move(packet), rng_.Between(config_.snapshot.min_delay_steps,
                                           config_.snapshot.max_delay_steps));
}

// ---------------------------------------------------------------------------
// Network.

std::string Cluster::DescribeMessage(const Message& m) {
  std::string out = absl::StrCat(
      "<- m", m.from, " ", raft::MessageTypeName(m.type), " term=", m.term,
      " index=", m.log_index, " log_term=", m.log_term, " commit=", m.commit);
  if (!m.entries.empty()) {
    absl::StrAppend(&out, " entries=[", m.entries.front().index, "..",
                    m.entries.back().index, "]");
  }
  if (m.reject) {
    absl::StrAppend(&out, " reject hint=", m.hint_index, "/", m.hint_term);
  }
  return out;
}

bool Cluster::ValidPeer(const Member& from, MemberId to) {
  if (to >= 1 && to <= size() && to != from.id) return true;
  checker_.Fail(absl::StrCat("member ", from.id, " addressed a message to ",
                             to, ", which is not another member"));
  return false;
}

bool Cluster::Blocked(MemberId from, MemberId to) const {
  return (blocked_ >> ((from - 1) * 8 + (to - 1))) & 1;
}

void Cluster::Block(MemberId from, MemberId to) {
  blocked_ |= uint64_t{1} << ((from - 1) * 8 + (to - 1));
}

void Cluster::HealAll() { blocked_ = 0; }

void Cluster::Send(Member& from, Message message) {
  if (!ValidPeer(from, message.to)) return;
  if (message.from != from.id) {
    checker_.Fail(absl::StrCat("member ", from.id, " sent a ",
                               raft::MessageTypeName(message.type),
                               " message claiming to be from ", message.from));
    return;
  }
  if (message.type == MessageType::kVoteResponse && !message.reject) {
    checker_.ObserveVoteGranted(from.id, message.term, message.to);
  }
  Member& to = member(message.to);
  if (!to.up) {
    if (rng_.Chance(500000)) from.core->ReportUnreachable(to.id);
    return;
  }
  const NetworkProfile& net = config_.network;
  if (rng_.Chance(net.drop_per_million)) return;
  Packet packet;
  packet.message = std::move(message);
  packet.from_incarnation = from.incarnation;
  packet.to_incarnation = to.incarnation;
  if (rng_.Chance(net.duplicate_per_million)) {
    Schedule(packet, rng_.Between(net.min_delay_steps, net.max_delay_steps +
                                                           net.reorder_extra_steps));
  }
  uint64_t delay = rng_.Between(net.min_delay_steps, net.max_delay_steps);
  if (rng_.Chance(net.reorder_per_million)) {
    delay += rng_.Between(0, net.reorder_extra_steps);
  }
  if (rng_.Chance(net.stale_per_million)) {
    delay += rng_.Between(0, net.stale_extra_steps);
  }
  Schedule(std::move(packet), delay);
}

void Cluster::Schedule(Packet packet, uint64_t delay) {
  packet.deliver_at = now_ + std::max<uint64_t>(delay, 1);
  packet.seq = next_seq_++;
  if (packet.snapshot) {
    packet.from_incarnation = member(packet.message.from).incarnation;
    packet.to_incarnation = member(packet.message.to).incarnation;
  }
  network_.push_back(std::move(packet));
  std::push_heap(network_.begin(), network_.end(), PacketLater());
}

void Cluster::Deliver(Packet& packet) {
  const Message& message = packet.message;
  Member& from = member(message.from);
  Member& to = member(message.to);
  if (from.incarnation != packet.from_incarnation ||
      to.incarnation != packet.to_incarnation || !to.up ||
      Blocked(message.from, message.to)) {
    return;
  }
  ++stats_.messages_delivered;
  if (trace_ != nullptr) Trace(to, DescribeMessage(message));
  to.core->Step(std::move(packet.message));
  Drive(to);
}

void Cluster::DeliverSnapshot(Packet& packet) {
  const MemberId from_id = packet.message.from;
  const MemberId to_id = packet.message.to;
  Member& from = member(from_id);
  Member& to = member(to_id);
  if (from.incarnation != packet.from_incarnation || !from.up) return;
  const bool ok = to.up && to.incarnation == packet.to_incarnation &&
                  !Blocked(from_id, to_id) &&
                  !rng_.Chance(config_.snapshot.fail_per_million);
  const Index sent_index = packet.snapshot ? packet.snapshot->applied : 0;
  if (ok) {
    to.staged = std::move(packet.snapshot);
    to.core->Step(std::move(packet.message));
    Drive(to);
  }
  if (from.up && from.incarnation == packet.from_incarnation) {
    from.core->ReportSnapshotSent(to_id, ok, sent_index);
    Drive(from);
  }
}

// ---------------------------------------------------------------------------
// Client inputs.

absl::StatusOr<raft::ProposalPosition> Cluster::Propose(
    MemberId id, std::vector<std::string> data) {
  Member& m = member(id);
  if (!m.up)
    return absl::UnavailableError(absl::StrCat("member ", id, " is down"));
  absl::StatusOr<raft::ProposalPosition> position =
      m.core->Propose(std::move(data));
  Drive(m);
  if (position.ok()) {
    Trace(m, absl::StrCat("accepted proposal [", position->first, ", ",
                          position->last, "] term=", position->term));
  }
  return position;
}

void Cluster::Read(MemberId id, raft::ReadMode mode) {
  Member& m = member(id);
  if (!m.up) return;
  std::string context = absl::StrCat("read-", next_read_++);
  const Index required = checker_.applied_max();
  if (m.core->ReadIndex(context, mode).ok()) {
    m.pending_reads.emplace(std::move(context), required);
  }
  Drive(m);
}

bool Cluster::ChangeMembership(MemberId id,
                               const raft::MembershipChange& change) {
  Member& m = member(id);
  if (!m.up) return false;
  const bool ok = m.core->ProposeMembershipChange(change).ok();
  Drive(m);
  if (ok) {
    Trace(m, absl::StrCat("membership change kind=",
                          static_cast<int>(change.kind), " member=", change.member));
  }
  return ok;
}

bool Cluster::TransferLeadership(MemberId id, MemberId to) {
  Member& m = member(id);
  if (!m.up) return false;
  const bool ok = m.core->TransferLeadership(to).ok();
  Drive(m);
  if (ok) Trace(m, absl::StrCat("transfers leadership to m", to));
  return ok;
}

Index Cluster::LowestPendingWrite(const Member& m) const {
  Index lowest = UINT64_MAX;
  for (const DiskWrite& write : m.disk) {
    if (!write.entries.empty()) {
      lowest = std::min(lowest, write.entries.front().index);
    }
  }
  return lowest;
}

void Cluster::CompactSome(MemberId id) {
  Member& m = member(id);
  if (!m.up) return;
  Index limit = std::min(m.sm.applied, m.log.LastIndex());
  const Index pending = LowestPendingWrite(m);
  if (pending != UINT64_MAX) limit = std::min(limit, pending - 1);
  const Index first = m.log.FirstIndex();
  if (limit < first) return;
  const Index upto = rng_.Between(first, limit);
  if (m.log.Compact(upto).ok()) {
    ++stats_.compactions;
    Trace(m, absl::StrCat("compacted through ", upto));
  }
}

// ---------------------------------------------------------------------------
// Crashes.

void Cluster::Crash(MemberId id, uint64_t restart_at) {
  Member& m = member(id);
  if (!m.up) return;
  Trace(m, absl::StrCat("crash, restart at t=", restart_at, ", ",
                        m.disk.size(), " writes in flight"));
  // Writes in flight may have reached the disk before the crash, in order,
  // without their acknowledgements having left.
  const uint64_t landed = rng_.Below(m.disk.size() + 1);
  for (uint64_t i = 0; i < landed && !checker_.failed(); ++i) {
    DiskWrite write = std::move(m.disk.front());
    m.disk.pop_front();
    Persist(m, write);
  }
  m.up = false;
  ++m.incarnation;
  m.restart_at = restart_at;
  m.core.reset();
  m.disk.clear();
  m.staged.reset();
  m.install_reports.clear();
  m.pending_reads.clear();
  m.unreported_bytes = 0;
  m.unreported_nonempty_entries = 0;
  m.report_applied_at.reset();
  ++stats_.crashes;
}

// The term at `index` in the log as the core sees it: the durable log with
// the writes still in flight laid over it, newest last.
std::optional<Term> Cluster::LogicalTermAt(const Member& m, Index index) const {
  for (auto it = m.disk.rbegin(); it != m.disk.rend(); ++it) {
    if (!it->entries.empty() && index >= it->entries.front().index) {
      if (index > it->entries.back().index) return std::nullopt;
      return it->entries[index - it->entries.front().index].term;
    }
    // A reset hides every older write and the stored log.
    if (it->reset) {
      if (index == it->reset->index) return it->reset->term;
      return std::nullopt;
    }
  }
  if (index < m.log.FirstIndex() || index > m.log.LastIndex()) return std::nullopt;
  absl::StatusOr<Term> term = m.log.TermAt(index);
  if (!term.ok()) return std::nullopt;
  return *term;
}

}  // namespace confman::sim
