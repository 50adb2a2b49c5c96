// The Raft protocol behind confman::raft::Core: elections, log
// replication, membership changes, leadership transfer and snapshots, as a
// deterministic state machine over logical time. Linearizable reads are in
// reads.cc and the bounded hand-out of committed entries in
// apply_window.cc. Section numbers refer to Diego Ongaro's thesis,
// "Consensus: Bridging Theory and Practice" (2014).
//
// Map of this file:
//   Roles and elections   §3.4, with pre-vote (§9.6) so that a member
//                         returning from a partition cannot depose a
//                         healthy leader, and check-quorum (§6.2) so that a
//                         leader cut off from a quorum steps down.
//   Message dispatch      the term rules every message obeys (§3.3).
//   Followers             the AppendEntries consistency check and fast
//                         backtracking (§3.5), snapshots (§5).
//   Leader                proposals, flow-controlled replication (§3.5,
//                         §10.2), commitment (§3.6.2), leadership transfer
//                         (§3.10), membership changes by joint consensus
//                         (§4.3) with one change pending at a time.
//   Storage reports, Ready, Status and CheckInvariants.
//
// Invariants (CheckInvariants reports a break; the simulator calls it
// after every step):
//   - reported_applied_index_ <= handed_out_index_ <= queued_index_ <=
//     commit_ <= log_.LastIndex(): nothing is handed out uncommitted, and
//     commit_ never moves back.
//   - A committed index is never rewritten: a follower refuses an append
//     that conflicts at or below its commit index.
//   - A leader counts an entry towards commitment only if it is of the
//     leader's own term (Figure 3.7); earlier entries commit with it.
//   - progress_ holds an entry for each other member exactly while this
//     member leads.
//
// Ordering that matters:
//   - Every input ends in AfterInput: commit what a quorum holds, queue
//     newly committed entries, release reads, and only then send a
//     requested heartbeat round, so one Ready reflects the whole input.
//   - The leader counts itself only through its durable index
//     (SelfMatch): it replicates an entry while still writing it, but an
//     entry it could lose in a crash never completes a quorum.
//   - Committed entries are handed out only once durable locally, and not
//     while a snapshot install is outstanding: the state machine must
//     never run ahead of the log or behind a snapshot it was given.
//   - Messages that promise durable state (votes, append acknowledgements)
//     leave only after the Ready's writes are durable (Send decides).
//   - After a log store failure Step drops every message and nothing more
//     is applied: the member must not act on a log it cannot read.
#include "core_impl.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "confman/raft/membership.h"
#include "quorum.h"

namespace confman::raft {
namespace {

uint64_t DataBytes(const std::vector<Entry>& entries) {
  uint64_t bytes = 0;
  for (const Entry& e : entries) bytes += e.data.size();
  return bytes;
}

bool IsResponse(MessageType type) {
  switch (type) {
    case MessageType::kPreVoteResponse:
    case MessageType::kVoteResponse:
    case MessageType::kAppendResponse:
    case MessageType::kHeartbeatResponse:
    case MessageType::kReadIndexResponse:
      return true;
    default:
      return false;
  }
}

}  // namespace

CoreImpl::CoreImpl(const CoreOptions& options, const LogReader* log)
    : options_(options),
      // One append's worth: what the next apply batch or a follower just
      // behind asks for.
      log_(log, options.max_append_bytes),
      rng_state_(options.random_seed) {}

bool CoreImpl::Faulty(TestingFault fault) const {
  return HasTestingFault(options_.testing_faults, fault);
}

uint32_t CoreImpl::NextRandom(uint32_t bound) {
  // splitmix64: deterministic, seeded from the options, no global state.
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<uint32_t>(z % bound);
}

absl::Status CoreImpl::Boot(const BootState& boot) {
  term_ = boot.hard_state.term;
  vote_ = boot.hard_state.vote;
  membership_ = boot.membership;
  membership_index_ = boot.membership_index;
  const Index last = log_.LastIndex();
  if (boot.applied > last) {
    return absl::DataLossError(absl::StrCat(
        "the state machine applied through index ", boot.applied,
        " but the log ends at ", last,
        "; the log store lost durable entries — restore this member from a "
        "snapshot or remove and re-add it"));
  }
  commit_ = std::min(std::max(boot.hard_state.commit, boot.applied), last);
  queued_index_ = boot.applied;
  handed_out_index_ = boot.applied;
  reported_applied_index_ = boot.applied;
  emitted_hard_state_ = HardState{term_, vote_, commit_};
  // Membership entries between the state machine's view and the commit
  // point are replayed so elections use the right configuration.
  Index next = std::max(boot.membership_index, log_.FirstIndex() - 1) + 1;
  while (next <= commit_) {
    auto entries = log_.Entries(next, commit_ + 1, options_.max_apply_bytes,
                                options_.max_append_entries);
    if (!entries.ok()) return entries.status();
    if (entries->empty()) break;
    for (const Entry& e : *entries) {
      if (e.type == EntryType::kMembership) ApplyMembershipEntry(e);
    }
    next = entries->back().index + 1;
  }
  BecomeFollower(term_, kNoMember);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Roles and elections (§3.4, §9.6 pre-vote, §6.2 check-quorum).
//
// The randomized timeout spreads candidates out so that one usually wins
// before another starts. A pre-candidate asks for votes in the term it
// would use without adopting it; only a pre-vote majority lets it become a
// candidate and bump the durable term.

void CoreImpl::ResetElectionTimer() {
  election_elapsed_ = 0;
  randomized_election_timeout_ = options_.election_timeout_ticks +
                                 NextRandom(options_.election_timeout_ticks);
}

void CoreImpl::BecomeFollower(Term term, MemberId leader) {
  if (term > term_) {
    term_ = term;
    vote_ = kNoMember;
  }
  role_ = Role::kFollower;
  leader_ = leader;
  progress_.clear();
  votes_.clear();
  transfer_target_ = kNoMember;
  uncommitted_.clear();
  uncommitted_bytes_ = 0;
  FailPendingReads();
  round_sent_at_.clear();
  round_requested_ = false;
  ResetElectionTimer();
}

void CoreImpl::BecomePreCandidate() {
  // A pre-candidate keeps its term and vote: nothing durable changes until
  // it knows it could win (§9.6).
  role_ = Role::kPreCandidate;
  leader_ = kNoMember;
  votes_.clear();
  ResetElectionTimer();
}

void CoreImpl::BecomeCandidate() {
  role_ = Role::kCandidate;
  term_ += 1;
  vote_ = options_.id;
  leader_ = kNoMember;
  votes_.clear();
  ResetElectionTimer();
}

void CoreImpl::BecomeLeader() {
  role_ = Role::kLeader;
  leader_ = options_.id;
  votes_.clear();
  transfer_target_ = kNoMember;
  lease_revoked_ = false;
  heartbeat_elapsed_ = 0;
  election_elapsed_ = 0;
  ResetProgress();
  // Any membership entry already in the log may be uncommitted; no new
  // change until everything up to here is applied.
  pending_membership_index_ = log_.LastIndex();
  // The no-op lets the leader learn what is committed (§6.4) and commits
  // the previous terms' entries indirectly (§3.6.2).
  Entry noop;
  noop.type = EntryType::kNoop;
  term_start_index_ = AppendLocal({std::move(noop)}).last;
  BroadcastAppend();
}

bool CoreImpl::Promotable() const {
  return IsVoter(membership_, options_.id) && !pending_install_;
}

bool CoreImpl::InLease() const {
  return options_.check_quorum && leader_ != kNoMember &&
         election_elapsed_ < options_.election_timeout_ticks;
}

void CoreImpl::Campaign(bool pre_vote, bool transfer) {
  if (pre_vote) {
    BecomePreCandidate();
  } else {
    BecomeCandidate();
  }
  const Term campaign_term = pre_vote ? term_ + 1 : term_;
  votes_[options_.id] = true;
  auto vote_of = [&](MemberId id) -> std::optional<bool> {
    auto it = votes_.find(id);
    if (it == votes_.end()) return std::nullopt;
    return it->second;
  };
  if (quorum::JointVote(membership_, vote_of) == quorum::VoteOutcome::kWon) {
    // A single-voter cluster wins at once.
    if (pre_vote) {
      Campaign(false, transfer);
    } else {
      BecomeLeader();
    }
    return;
  }
  std::vector<MemberId> voters = membership_.voters;
  voters.insert(voters.end(), membership_.voters_outgoing.begin(),
                membership_.voters_outgoing.end());
  std::sort(voters.begin(), voters.end());
  voters.erase(std::unique(voters.begin(), voters.end()), voters.end());
  for (MemberId id : voters) {
    if (id == options_.id) continue;
    Message m;
    m.type = pre_vote ? MessageType::kPreVote : MessageType::kVote;
    m.to = id;
    m.term = campaign_term;
    m.log_index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    m.transfer = transfer;
    Send(std::move(m));
  }
}

void CoreImpl::Tick() {
  ++now_;
  if (role_ == Role::kLeader) {
    ++heartbeat_elapsed_;
    if (options_.check_quorum && !QuorumRecentlyHeard()) {
      // §6.2: a leader cut off from a quorum for an election timeout steps
      // down, so clients stop waiting on it and its lease cannot outlive it.
      BecomeFollower(term_, kNoMember);
      return AfterInput();
    }
    // While it hears from a quorum the leader, like its followers, ignores
    // disruptive vote requests (InLease).
    election_elapsed_ = 0;
    if (transfer_target_ != kNoMember &&
        ++transfer_elapsed_ >= options_.election_timeout_ticks) {
      // §3.10: abort a transfer that has not completed within an election
      // timeout so the leader resumes accepting proposals.
      transfer_target_ = kNoMember;
    }
    if (heartbeat_elapsed_ >= options_.heartbeat_interval_ticks) {
      heartbeat_elapsed_ = 0;
      round_requested_ = true;
    }
    ProbeOverdueSnapshots();
  } else {
    ++election_elapsed_;
    if (Promotable() && election_elapsed_ >= randomized_election_timeout_) {
      Campaign(options_.pre_vote, /*transfer=*/false);
    }
  }
  AfterInput();
}

bool CoreImpl::RecentlyHeard(const Progress& pr) const {
  return now_ - pr.last_heard_tick < options_.election_timeout_ticks;
}

bool CoreImpl::QuorumRecentlyHeard() const {
  auto active = [&](MemberId id) -> std::optional<bool> {
    if (id == options_.id) return true;
    auto it = progress_.find(id);
    return it != progress_.end() && RecentlyHeard(it->second);
  };
  return quorum::JointVote(membership_, active) == quorum::VoteOutcome::kWon;
}

// ---------------------------------------------------------------------------
// Message dispatch. Messages not addressed to this member, without a
// sender or from itself, or arriving after a storage failure, are dropped;
// the rest first pass the term rules.

void CoreImpl::Step(Message m) {
  if (m.to != options_.id || m.from == kNoMember || m.from == options_.id) {
    return;
  }
  if (!storage_error_.ok()) return;
  if (HandleTerm(m)) {
    switch (m.type) {
      case MessageType::kPreVote:
      case MessageType::kVote:
        HandleVoteRequest(m);
        break;
      case MessageType::kPreVoteResponse:
      case MessageType::kVoteResponse:
        HandleVoteResponse(m);
        break;
      case MessageType::kAppend:
        HandleAppend(m);
        break;
      case MessageType::kHeartbeat:
        HandleHeartbeat(m);
        break;
      case MessageType::kSnapshot:
        HandleSnapshot(m);
        break;
      case MessageType::kAppendResponse:
        HandleAppendResponse(m);
        break;
      case MessageType::kHeartbeatResponse:
        HandleHeartbeatResponse(m);
        break;
      case MessageType::kReadIndex:
        HandleReadIndexRequest(m);
        break;
      case MessageType::kReadIndexResponse:
        HandleReadIndexResponse(m);
        break;
      case MessageType::kTimeoutNow:
        HandleTimeoutNow(m);
        break;
    }
  }
  AfterInput();
}

// Applies the term rules common to every message (§3.3). Returns false when
// the message must not be processed further.
bool CoreImpl::HandleTerm(const Message& m) {
  const bool vote_request =
      m.type == MessageType::kPreVote || m.type == MessageType::kVote;
  if (m.term > term_) {
    if (vote_request && !m.transfer && InLease()) {
      // §4.2.3 / §6.2: a member that recently heard from a leader ignores
      // disruptive candidates, so a rejoining member cannot depose it.
      return false;
    }
    if (m.type == MessageType::kPreVote) return true;
    if (m.type == MessageType::kPreVoteResponse && !m.reject) return true;
    const bool from_leader = m.type == MessageType::kAppend ||
                             m.type == MessageType::kHeartbeat ||
                             m.type == MessageType::kSnapshot;
    BecomeFollower(m.term, from_leader ? m.from : kNoMember);
    return true;
  }
  if (m.term < term_) {
    if ((options_.check_quorum || options_.pre_vote) &&
        (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat)) {
      // Tell a deposed leader about the newer term; otherwise a leader
      // isolated by check-quorum on the other side could keep its old term
      // forever (a pre-vote never raises the term it would need to see).
      Message reply = Reply(m, MessageType::kAppendResponse);
      reply.reject = true;
      Send(std::move(reply));
    } else if (m.type == MessageType::kPreVote) {
      Message reply = Reply(m, MessageType::kPreVoteResponse);
      reply.reject = true;
      Send(std::move(reply));
    }
    return false;
  }
  return true;
}

void CoreImpl::HandleVoteRequest(const Message& m) {
  const bool pre = m.type == MessageType::kPreVote;
  bool can_vote = vote_ == m.from ||
                  (vote_ == kNoMember && leader_ == kNoMember) ||
                  (pre && m.term > term_);
  if (!pre && Faulty(TestingFault::kGrantTwoVotesPerTerm)) can_vote = true;
  // §3.6.1: grant only to candidates whose log is at least as up to date.
  const Term last_term = log_.LastTerm();
  const bool up_to_date =
      m.log_term > last_term ||
      (m.log_term == last_term && m.log_index >= log_.LastIndex());
  Message reply = Reply(
      m, pre ? MessageType::kPreVoteResponse : MessageType::kVoteResponse);
  if (can_vote && up_to_date) {
    // A pre-vote answer carries the candidate's prospective term so the
    // candidate counts it; our own term does not move.
    reply.term = m.term;
    if (!pre) {
      vote_ = m.from;
      election_elapsed_ = 0;
    }
  } else {
    reply.reject = true;
  }
  Send(std::move(reply));
}

void CoreImpl::HandleVoteResponse(const Message& m) {
  const bool pre = m.type == MessageType::kPreVoteResponse;
  if ((pre && role_ != Role::kPreCandidate) ||
      (!pre && role_ != Role::kCandidate)) {
    return;
  }
  votes_.emplace(m.from, !m.reject);
  auto vote_of = [&](MemberId id) -> std::optional<bool> {
    auto it = votes_.find(id);
    if (it == votes_.end()) return std::nullopt;
    return it->second;
  };
  switch (quorum::JointVote(membership_, vote_of)) {
    case quorum::VoteOutcome::kWon:
      if (pre) {
        Campaign(false, false);
      } else {
        BecomeLeader();
      }
      break;
    case quorum::VoteOutcome::kLost:
      BecomeFollower(term_, kNoMember);
      break;
    case quorum::VoteOutcome::kPending:
      break;
  }
}

void CoreImpl::HandleTimeoutNow(const Message& m) {
  // §3.10: the leader handed over; campaign at once, skipping pre-vote and
  // telling voters to set their lease aside.
  if (!Promotable() || m.from != leader_) return;
  Campaign(/*pre_vote=*/false, /*transfer=*/true);
}

// ---------------------------------------------------------------------------
// Followers: AppendEntries, heartbeats, snapshots (§3.5, §5).
//
// Any of the three from the current term's leader resets the election
// timer and makes this member a follower of the sender. A follower never
// rewrites an entry at or below its commit index, and answers with the
// highest index it knows matches the leader's log.

bool CoreImpl::ValidAppendEntries(const Message& m) const {
  Term previous_term = m.log_term;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    if (e.index != m.log_index + 1 + i || e.term < previous_term ||
        e.term > m.term) {
      return false;
    }
    previous_term = e.term;
  }
  return true;
}

// The largest index <= `index` whose term is <= `term`: where two logs that
// disagree at `index` may still agree (the fast backtracking of §3.5).
Index CoreImpl::FindConflictByTerm(Index index, Term term) const {
  index = std::min(index, log_.LastIndex());
  while (index > 0) {
    auto t = log_.TermAt(index);
    if (!t.ok() || *t <= term) break;
    --index;
  }
  return index;
}

void CoreImpl::RejectAppend(const Message& m) {
  Message reply = Reply(m, MessageType::kAppendResponse);
  reply.reject = true;
  reply.log_index = m.log_index;
  reply.hint_index = FindConflictByTerm(m.log_index, m.log_term);
  auto hint_term = log_.TermAt(reply.hint_index);
  reply.hint_term = hint_term.ok() ? *hint_term : 0;
  Send(std::move(reply));
}

void CoreImpl::HandleAppend(Message& m) {
  if (role_ != Role::kFollower) BecomeFollower(term_, m.from);
  leader_ = m.from;
  election_elapsed_ = 0;
  if (!ValidAppendEntries(m)) return;
  Message reply = Reply(m, MessageType::kAppendResponse);
  if (m.log_index < commit_) {
    // Everything through our commit index already matches the leader's
    // (leader completeness, §3.6.3): keep only what lies beyond it.
    const auto covered =
        std::find_if(m.entries.begin(), m.entries.end(),
                     [&](const Entry& e) { return e.index == commit_; });
    if (covered == m.entries.end()) {
      reply.log_index = commit_;
      Send(std::move(reply));
      return;
    }
    m.log_term = covered->term;
    m.log_index = commit_;
    m.entries.erase(m.entries.begin(), covered + 1);
  }
  absl::StatusOr<bool> prev_matches = log_.Matches(m.log_index, m.log_term);
  if (!prev_matches.ok()) return FailStorage(prev_matches.status());
  if (!*prev_matches && !(Faulty(TestingFault::kSkipConsistencyCheck) &&
                          m.log_index <= log_.LastIndex())) {
    return RejectAppend(m);
  }
  // Skip the prefix we already hold; append from the first conflict.
  size_t first_new = 0;
  for (; first_new < m.entries.size(); ++first_new) {
    const Entry& e = m.entries[first_new];
    absl::StatusOr<bool> held = log_.Matches(e.index, e.term);
    if (!held.ok()) return FailStorage(held.status());
    if (!*held) break;
  }
  if (first_new < m.entries.size()) {
    const Index conflict = m.entries[first_new].index;
    if (conflict <= commit_) {
      broken_invariant_ = absl::StrCat("leader ", m.from, " in term ", m.term,
                                       " rewrote committed index ", conflict);
      return;
    }
    std::vector<Entry> fresh(
        std::make_move_iterator(m.entries.begin() + first_new),
        std::make_move_iterator(m.entries.end()));
    log_.Append(std::move(fresh));
  }
  const Index last_new = m.log_index + m.entries.size();
  commit_ = std::max(commit_, std::min(m.commit, last_new));
  reply.log_index = last_new;
  Send(std::move(reply));
}

void CoreImpl::HandleHeartbeat(const Message& m) {
  if (role_ != Role::kFollower) BecomeFollower(term_, m.from);
  leader_ = m.from;
  election_elapsed_ = 0;
  // The leader never sends a commit index beyond what it knows we hold.
  commit_ = std::max(commit_, std::min(m.commit, log_.LastIndex()));
  Message reply = Reply(m, MessageType::kHeartbeatResponse);
  reply.round = m.round;
  Send(std::move(reply));
}

void CoreImpl::HandleSnapshot(const Message& m) {
  if (role_ != Role::kFollower) BecomeFollower(term_, m.from);
  leader_ = m.from;
  election_elapsed_ = 0;
  if (!m.snapshot) return;
  const SnapshotMeta& meta = *m.snapshot;
  Message reply = Reply(m, MessageType::kAppendResponse);
  if (meta.index <= commit_) {
    // Stale: our state is already at least this new.
    reply.log_index = commit_;
  } else if (log_.Matches(meta.index, meta.term).value_or(false)) {
    // We hold the entry: only the commit index moves.
    commit_ = meta.index;
    reply.log_index = meta.index;
  } else {
    log_.Reset(meta);
    snapshot_to_install_ = meta;
    pending_install_ = meta;
    commit_ = meta.index;
    queued_index_ = meta.index;
    committed_to_emit_.clear();
    committed_to_emit_bytes_ = 0;
    // A snapshot of a cluster whose membership never changed carries none:
    // the founding configuration this member booted with still holds.
    if (!meta.membership.voters.empty()) {
      membership_ = meta.membership;
      membership_index_ = meta.index;
    }
    reply.log_index = meta.index;
  }
  Send(std::move(reply));
}

// ---------------------------------------------------------------------------
// Leader: proposals and replication (§3.5, §10.2).
//
// Each follower's Progress (progress.h) paces what is sent: one probe at a
// time until the follower's match is found, then pipelined batches within
// the in-flight window, or a snapshot once the entries it needs have been
// compacted away. Proposals count against the uncommitted-bytes budget
// until they commit.

ProposalPosition CoreImpl::AppendLocal(std::vector<Entry> entries) {
  ProposalPosition pos;
  pos.term = term_;
  pos.first = log_.LastIndex() + 1;
  Index index = pos.first;
  for (Entry& e : entries) {
    e.term = term_;
    e.index = index++;
    if (!e.data.empty()) {
      uncommitted_.emplace_back(e.index, e.data.size());
      uncommitted_bytes_ += e.data.size();
    }
  }
  pos.last = index - 1;
  log_.Append(std::move(entries));
  return pos;
}

absl::StatusOr<ProposalPosition> CoreImpl::Propose(
    std::vector<std::string> data) {
  if (role_ != Role::kLeader) {
    return absl::FailedPreconditionError(
        leader_ == kNoMember
            ? std::string("not the leader and no leader is known; retry after "
                          "an election")
            : absl::StrCat("not the leader; the leader is member ", leader_));
  }
  if (transfer_target_ != kNoMember) {
    return absl::UnavailableError(
        absl::StrCat("leadership is being transferred to member ",
                     transfer_target_, "; retry shortly"));
  }
  if (data.empty()) {
    return absl::InvalidArgumentError("a proposal needs at least one entry");
  }
  uint64_t bytes = 0;
  for (const std::string& d : data) bytes += d.size();
  if (uncommitted_bytes_ + bytes > options_.max_uncommitted_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the leader holds ", uncommitted_bytes_,
        " bytes of uncommitted entries and the budget is ",
        options_.max_uncommitted_bytes, "; retry after entries commit"));
  }
  std::vector<Entry> entries(data.size());
  for (size_t i = 0; i < data.size(); ++i) entries[i].data = std::move(data[i]);
  ProposalPosition pos = AppendLocal(std::move(entries));
  BroadcastAppend();
  AfterInput();
  return pos;
}

void CoreImpl::ResetProgress() {
  progress_.clear();
  SyncProgressWithMembership();
}

void CoreImpl::SyncProgressWithMembership() {
  for (auto it = progress_.begin(); it != progress_.end();) {
    it = IsMember(membership_, it->first) ? std::next(it) : progress_.erase(it);
  }
  auto add = [&](MemberId id) {
    if (id == options_.id || progress_.count(id)) return;
    Progress pr;
    pr.next = log_.LastIndex() + 1;
    pr.match = 0;
    // A new member (or a new leader's follower) gets a full election
    // timeout before it counts as silent.
    pr.last_heard_tick = now_;
    progress_.emplace(id, std::move(pr));
  };
  for (MemberId id : membership_.voters) add(id);
  for (MemberId id : membership_.voters_outgoing) add(id);
  for (MemberId id : membership_.learners) add(id);
}

// A follower that never acknowledged the snapshot it was sent (it crashed
// while installing, or the acknowledgement was lost) is probed again.
void CoreImpl::ProbeOverdueSnapshots() {
  for (auto& [id, pr] : progress_) {
    if (pr.state == Progress::State::kSnapshot && pr.sent_snapshot_index > 0 &&
        now_ >= pr.snapshot_deadline_tick) {
      pr.BecomeProbe();
      SendAppend(id, pr, true);
    }
  }
}

void CoreImpl::BroadcastAppend() {
  for (auto& [id, pr] : progress_) SendAppend(id, pr, /*send_if_empty=*/true);
}

// Sends one AppendEntries to `to` if flow control allows. Returns true if
// a message (or a snapshot request) went out.
bool CoreImpl::SendAppend(MemberId to, Progress& pr, bool send_if_empty) {
  if (pr.Paused(options_.max_inflight_messages, options_.max_inflight_bytes)) {
    return false;
  }
  const Index last = log_.LastIndex();
  if (pr.next > last && !send_if_empty) return false;
  const Index prev = pr.next - 1;
  auto prev_term = log_.TermAt(prev);
  absl::StatusOr<std::vector<Entry>> entries =
      prev_term.ok() ? log_.Entries(pr.next, last + 1, AppendByteBudget(pr),
                                    options_.max_append_entries)
                     : prev_term.status();
  if (!entries.ok()) {
    if (!absl::IsOutOfRange(entries.status())) {
      FailStorage(entries.status());
      return false;
    }
    // The entries it needs were compacted: it must take a snapshot (§5.3).
    pr.BecomeSnapshot();
    snapshots_to_send_.push_back(SnapshotSend{to});
    return true;
  }
  if (pr.state == Progress::State::kReplicate && pr.inflights.count() > 0 &&
      pr.inflights.bytes() + DataBytes(*entries) >
          options_.max_inflight_bytes) {
    // Only an empty window may be overshot, by one oversized batch.
    return false;
  }
  Message m;
  m.type = MessageType::kAppend;
  m.to = to;
  m.term = term_;
  m.log_index = prev;
  m.log_term = *prev_term;
  m.commit = commit_;
  m.entries = std::move(*entries);
  if (!m.entries.empty()) {
    pr.SentEntries(m.entries.back().index, DataBytes(m.entries));
  } else if (pr.state == Progress::State::kProbe) {
    pr.probe_sent = true;
  }
  Send(std::move(m));
  return true;
}

void CoreImpl::SendHeartbeat(MemberId to, const Progress& pr) {
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  m.term = term_;
  m.commit = std::min(pr.match, commit_);
  m.round = round_;
  Send(std::move(m));
}

void CoreImpl::BroadcastHeartbeat() {
  ++round_;
  round_sent_at_.emplace_back(round_, now_);
  // Unacknowledged rounds only matter for an election timeout or so.
  while (round_sent_at_.size() > 4 * options_.election_timeout_ticks + 16) {
    round_sent_at_.pop_front();
  }
  for (const auto& [id, pr] : progress_) SendHeartbeat(id, pr);
  // A cluster of one confirms every round at once.
  ReleaseReads();
}

uint64_t CoreImpl::AppendByteBudget(const Progress& pr) const {
  if (pr.state != Progress::State::kReplicate) return options_.max_append_bytes;
  const uint64_t window_left =
      options_.max_inflight_bytes -
      std::min(options_.max_inflight_bytes, pr.inflights.bytes());
  return std::min(options_.max_append_bytes, window_left);
}

Index CoreImpl::SelfMatch() const { return log_.durable_index(); }

bool CoreImpl::MaybeCommit() {
  auto match_of = [&](MemberId id) -> Index {
    if (id == options_.id) return SelfMatch();
    auto it = progress_.find(id);
    return it == progress_.end() ? 0 : it->second.match;
  };
  const Index candidate = quorum::JointValue(membership_, match_of);
  if (candidate <= commit_ || candidate > log_.LastIndex()) return false;
  // §3.6.2 (Figure 3.7): only entries of the current term commit by
  // counting replicas.
  auto term = log_.TermAt(candidate);
  if (!term.ok()) return false;
  if (*term != term_ && !Faulty(TestingFault::kCommitOldTermEntries)) {
    return false;
  }
  commit_ = candidate;
  while (!uncommitted_.empty() && uncommitted_.front().first <= commit_) {
    uncommitted_bytes_ -= uncommitted_.front().second;
    uncommitted_.pop_front();
  }
  return true;
}

void CoreImpl::HandleAppendResponse(const Message& m) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.last_heard_tick = now_;
  if (m.reject) {
    Index retry_from = m.hint_index + 1;
    if (m.hint_term > 0) {
      // Jump over the whole run of the follower's conflicting term.
      retry_from = FindConflictByTerm(m.hint_index, m.hint_term) + 1;
    }
    if (pr.state == Progress::State::kSnapshot) return;
    if (pr.Reject(m.log_index, retry_from)) SendAppend(m.from, pr, true);
    return;
  }
  const bool advanced = pr.AcknowledgeMatch(m.log_index);
  if (pr.state == Progress::State::kSnapshot) {
    if (pr.match + 1 >= log_.FirstIndex()) {
      pr.BecomeProbe();
    } else if (pr.sent_snapshot_index > 0 &&
               pr.match >= pr.sent_snapshot_index) {
      // Installed, but this log was compacted past it meanwhile.
      pr.BecomeSnapshot();
      snapshots_to_send_.push_back(SnapshotSend{m.from});
    }
  }
  if (pr.state == Progress::State::kProbe && pr.match + 1 == pr.next) {
    pr.BecomeReplicate();
  }
  if (advanced && MaybeCommit()) {
    // Followers learn the new commit index from the next append.
    BroadcastAppend();
  }
  while (SendAppend(m.from, pr, /*send_if_empty=*/false) &&
         pr.state == Progress::State::kReplicate) {
  }
  if (m.from == transfer_target_) MaybeSendTimeoutNow(m.from);
}

void CoreImpl::HandleHeartbeatResponse(const Message& m) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.last_heard_tick = now_;
  pr.acked_round = std::max(pr.acked_round, m.round);
  // A lost probe is retried once the follower is heard from again; a
  // window that blocks sending across a heartbeat probably lost an append.
  if (pr.state == Progress::State::kProbe) pr.probe_sent = false;
  const bool probing = pr.state == Progress::State::kProbe;
  if (pr.match < log_.LastIndex() && !SendAppend(m.from, pr, probing) &&
      pr.state == Progress::State::kReplicate && pr.inflights.count() > 0) {
    pr.inflights.FreeOldest();
    SendAppend(m.from, pr, /*send_if_empty=*/true);
  }
  ReleaseReads();
}

void CoreImpl::MaybeSendTimeoutNow(MemberId to) {
  auto it = progress_.find(to);
  if (it == progress_.end() || it->second.match != log_.LastIndex()) return;
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  m.term = term_;
  // The target may win before this leader hears of it, and voters set
  // their lease aside for it: from here on this term's lease is void.
  lease_revoked_ = true;
  Send(std::move(m));
}

absl::Status CoreImpl::TransferLeadership(MemberId to) {
  if (role_ != Role::kLeader) {
    return absl::FailedPreconditionError(absl::StrCat(
        "only the leader can transfer leadership; the leader is member ",
        leader_));
  }
  if (to == options_.id) return absl::OkStatus();
  if (!IsVoter(membership_, to) || !progress_.count(to)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "member ", to, " is not a voter and cannot take leadership"));
  }
  transfer_target_ = to;
  transfer_elapsed_ = 0;
  Progress& pr = progress_.at(to);
  if (pr.match == log_.LastIndex()) {
    MaybeSendTimeoutNow(to);
  } else {
    SendAppend(to, pr, true);
  }
  AfterInput();
  return absl::OkStatus();
}

absl::StatusOr<ProposalPosition> CoreImpl::ProposeMembershipChange(
    const MembershipChange& change) {
  if (role_ != Role::kLeader) {
    return absl::FailedPreconditionError(absl::StrCat(
        "membership changes go through the leader; the leader is member ",
        leader_));
  }
  if (transfer_target_ != kNoMember) {
    return absl::UnavailableError(
        "a leadership transfer is in progress; retry");
  }
  if (pending_membership_index_ > queued_index_ || membership_.joint()) {
    return absl::UnavailableError(
        "another membership change is still in progress; retry once it is "
        "applied");
  }
  auto target = ApplyChange(membership_, change);
  if (!target.ok()) return target.status();
  Entry entry;
  entry.type = EntryType::kMembership;
  entry.data = EncodeMembership(EnterJoint(membership_, *target));
  ProposalPosition pos = AppendLocal({std::move(entry)});
  pending_membership_index_ = pos.last;
  BroadcastAppend();
  AfterInput();
  return pos;
}

void CoreImpl::MaybeLeaveJoint() {
  if (role_ != Role::kLeader || !membership_.joint() ||
      pending_membership_index_ > queued_index_) {
    return;
  }
  // §4.3: once the joint configuration is committed the leader moves on to
  // the new one without being asked.
  Entry entry;
  entry.type = EntryType::kMembership;
  entry.data = EncodeMembership(LeaveJoint(membership_));
  pending_membership_index_ = AppendLocal({std::move(entry)}).last;
  BroadcastAppend();
}

// ---------------------------------------------------------------------------
// Storage reports. A durable write can complete a quorum on the leader;
// the others adjust a follower's progress or the apply window.

void CoreImpl::ReportDurable(Index index, Term term) {
  if (log_.MarkDurable(index, term) && role_ == Role::kLeader &&
      MaybeCommit()) {
    BroadcastAppend();
  }
  AfterInput();
}

void CoreImpl::ReportSnapshotInstalled(const SnapshotMeta& meta) {
  if (pending_install_ && pending_install_->index == meta.index) {
    pending_install_.reset();
    ResetApplyWindow(meta.index);
  }
  AfterInput();
}

void CoreImpl::ReportSnapshotSent(MemberId to, bool ok, Index snapshot_index) {
  auto it = progress_.find(to);
  if (role_ == Role::kLeader && it != progress_.end() &&
      it->second.state == Progress::State::kSnapshot) {
    Progress& pr = it->second;
    if (ok && snapshot_index > 0) {
      // The follower acknowledges once it has installed the snapshot. A
      // probe before that would be refused by a log that has not reached
      // the snapshot yet, and send the leader back for another one.
      pr.sent_snapshot_index = snapshot_index;
      pr.snapshot_deadline_tick =
          now_ + uint64_t{kSnapshotAckTimeoutElections} *
                     options_.election_timeout_ticks;
    } else {
      pr.BecomeProbe();
      SendAppend(to, pr, true);
    }
  }
  AfterInput();
}

void CoreImpl::ReportUnreachable(MemberId member) {
  auto it = progress_.find(member);
  if (role_ == Role::kLeader && it != progress_.end() &&
      it->second.state == Progress::State::kReplicate) {
    it->second.BecomeProbe();
  }
  AfterInput();
}

void CoreImpl::FailStorage(const absl::Status& status) {
  if (storage_error_.ok()) storage_error_ = status;
}

// ---------------------------------------------------------------------------
// Applying and Ready: the end of every input, membership taking effect as
// its entry is queued for applying, and collecting the Ready batch.

void CoreImpl::AfterInput() {
  if (role_ == Role::kLeader && MaybeCommit()) BroadcastAppend();
  AdvanceApply();
  if (role_ == Role::kLeader) {
    ReleaseReads();
    if (round_requested_) {
      round_requested_ = false;
      BroadcastHeartbeat();
    }
  }
}

void CoreImpl::ApplyMembershipEntry(const Entry& entry) {
  auto decoded = DecodeMembership(entry.data);
  if (!decoded.ok()) {
    broken_invariant_ =
        absl::StrCat("undecodable membership entry at index ", entry.index,
                     ": ", decoded.status().message());
    return;
  }
  membership_ = std::move(*decoded);
  membership_index_ = entry.index;
  if (role_ != Role::kLeader) return;
  if (!IsVoter(membership_, options_.id)) {
    // §4.2.2: a leader outside the new configuration steps down once it
    // is committed.
    BecomeFollower(term_, kNoMember);
    return;
  }
  SyncProgressWithMembership();
  if (transfer_target_ != kNoMember &&
      !IsVoter(membership_, transfer_target_)) {
    transfer_target_ = kNoMember;
  }
}

Message CoreImpl::ReplyTo(MemberId to, MessageType type) const {
  Message reply;
  reply.type = type;
  reply.to = to;
  reply.term = term_;
  return reply;
}

Message CoreImpl::Reply(const Message& m, MessageType type) const {
  return ReplyTo(m.from, type);
}

void CoreImpl::Send(Message m) {
  m.from = options_.id;
  // A leader's traffic never promises anything about its own disk, so it
  // leaves at once; answers and campaign messages promise durable votes,
  // terms and log entries, so they wait for the writes before them.
  // A heartbeat's answer carries no vote and no entry: the term it names
  // needs no durability for safety (votes, which are durable, decide who
  // leads). So it never waits behind a log write, and a follower whose
  // fsync is slow is not taken for a dead one by check-quorum.
  if (role_ == Role::kLeader && !IsResponse(m.type)) {
    messages_.push_back(std::move(m));
  } else if (m.type == MessageType::kReadIndexResponse ||
             m.type == MessageType::kHeartbeatResponse) {
    messages_.push_back(std::move(m));
  } else {
    messages_after_persist_.push_back(std::move(m));
  }
}

bool CoreImpl::HasReady() const {
  return snapshot_to_install_ || !messages_.empty() ||
         !messages_after_persist_.empty() || !committed_to_emit_.empty() ||
         !read_states_.empty() || !failed_reads_.empty() ||
         !snapshots_to_send_.empty() ||
         HardState{term_, vote_, commit_} != emitted_hard_state_ ||
         log_.HasUnemitted();
}

Ready CoreImpl::TakeReady() {
  Ready ready;
  ready.snapshot_to_install = std::move(snapshot_to_install_);
  snapshot_to_install_.reset();
  ready.messages = std::move(messages_);
  messages_.clear();
  const HardState hs{term_, vote_, commit_};
  if (hs != emitted_hard_state_) {
    ready.hard_state = hs;
    emitted_hard_state_ = hs;
  }
  ready.entries = log_.TakeUnemitted();
  ready.messages_after_persist = std::move(messages_after_persist_);
  messages_after_persist_.clear();
  ready.committed_entries = std::move(committed_to_emit_);
  committed_to_emit_.clear();
  if (!ready.committed_entries.empty()) {
    handed_out_index_ = ready.committed_entries.back().index;
  }
  committed_to_emit_bytes_ = 0;
  ready.read_states = std::move(read_states_);
  read_states_.clear();
  ready.failed_reads = std::move(failed_reads_);
  failed_reads_.clear();
  ready.snapshots_to_send = std::move(snapshots_to_send_);
  snapshots_to_send_.clear();
  // Handing out committed entries frees room for more.
  AdvanceApply();
  return ready;
}

CoreStatus CoreImpl::Status() const {
  CoreStatus s;
  s.id = options_.id;
  s.role = role_;
  s.term = term_;
  s.leader = leader_;
  s.commit = commit_;
  s.queued_index = queued_index_;
  s.reported_applied_index = reported_applied_index_;
  s.unapplied_bytes = unapplied_bytes_;
  s.last_index = log_.LastIndex();
  s.durable_index = log_.durable_index();
  s.membership = membership_;
  s.uncommitted_bytes = uncommitted_bytes_;
  s.storage_error = storage_error_;
  for (const auto& [id, pr] : progress_) {
    MemberProgress mp;
    mp.id = id;
    mp.voter = IsVoter(membership_, id);
    mp.state = pr.state;
    mp.match = pr.match;
    mp.next = pr.next;
    mp.inflight_messages = pr.inflights.count();
    mp.inflight_bytes = pr.inflights.bytes();
    mp.recently_active = RecentlyHeard(pr);
    s.progress.push_back(mp);
  }
  return s;
}

absl::Status CoreImpl::CheckInvariants() const {
  auto fail = [&](const std::string& what) {
    return absl::InternalError(
        absl::StrCat("member ", options_.id, " term ", term_, ": ", what));
  };
  if (!broken_invariant_.empty()) return fail(broken_invariant_);
  const Index last = log_.LastIndex();
  if (queued_index_ > commit_) {
    return fail(absl::StrCat("queued ", queued_index_, " > commit ", commit_));
  }
  if (commit_ > last) {
    return fail(absl::StrCat("commit ", commit_, " > last index ", last));
  }
  if (auto s = CheckApplyWindow(); !s.empty()) return fail(s);
  if (log_.durable_index() > log_.emitted_through() ||
      log_.emitted_through() > last ||
      log_.emitted_through() + 1 < log_.unstable_offset()) {
    return fail(absl::StrCat("durable ", log_.durable_index(), ", emitted ",
                             log_.emitted_through(), ", unstable from ",
                             log_.unstable_offset(), ", last ", last,
                             " out of order"));
  }
  if (const auto& reset = log_.unsynced_reset();
      reset && log_.unstable_offset() != reset->index + 1) {
    return fail(absl::StrCat("log reset to ", reset->index,
                             " not durable, yet unstable entries start at ",
                             log_.unstable_offset()));
  }
  if (pending_install_ && queued_index_ < pending_install_->index) {
    return fail(absl::StrCat("snapshot at ", pending_install_->index,
                             " pending while queued is ", queued_index_));
  }
  Term previous = 0;
  Index expected = log_.unstable_offset();
  for (const Entry& e : log_.unstable()) {
    if (e.index != expected++ || e.term < previous || e.term > term_) {
      return fail(absl::StrCat("unstable entry ", e.index, " out of order"));
    }
    previous = e.term;
  }
  // The entries kept in memory after they became durable are answered
  // instead of the stored log's: they must be in order, durable, and end
  // where the unstable ones begin. (Nothing here reads storage: the Node
  // runs this check before every Ready, on the Raft loop.)
  const std::deque<Entry>& tail = log_.durable_tail();
  for (size_t i = 0; i < tail.size(); ++i) {
    const Index want = log_.unstable_offset() - tail.size() + i;
    if (tail[i].index != want || tail[i].index > log_.durable_index()) {
      return fail(absl::StrCat("durable tail entry ", tail[i].index, " where ",
                               want, " belongs"));
    }
  }
  if (role_ == Role::kLeader) {
    if (vote_ != options_.id || leader_ != options_.id) {
      return fail("leader that did not vote for itself");
    }
    for (const auto& [id, pr] : progress_) {
      if (pr.match >= pr.next) {
        return fail(absl::StrCat("progress of ", id, " has match ", pr.match,
                                 " >= next ", pr.next));
      }
      if (!IsMember(membership_, id)) {
        return fail(absl::StrCat("progress kept for non-member ", id));
      }
    }
  }
  for (MemberId learner : membership_.learners) {
    if (IsVoter(membership_, learner)) {
      return fail(absl::StrCat("member ", learner, " is learner and voter"));
    }
  }
  return absl::OkStatus();
}

}  // namespace confman::raft
