// confman::raft::Core, the public face of the Raft core: option
// validation, construction and boot, and one-line forwarding of every call
// to CoreImpl (core_impl.h), which holds the protocol state.
#include "confman/raft/core.h"

#include "absl/strings/str_cat.h"
#include "core_impl.h"

namespace confman::raft {

absl::Status CoreOptions::Validate() const {
  auto invalid = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("raft options: ", parts...));
  };
  if (id == kNoMember) return invalid("id must not be 0");
  if (heartbeat_interval_ticks == 0) {
    return invalid("heartbeat_interval_ticks must be at least 1");
  }
  if (election_timeout_ticks <= heartbeat_interval_ticks) {
    return invalid("election_timeout_ticks (", election_timeout_ticks,
                   ") must exceed heartbeat_interval_ticks (",
                   heartbeat_interval_ticks, ")");
  }
  if (lease_clock_drift_ticks >= election_timeout_ticks) {
    return invalid("lease_clock_drift_ticks (", lease_clock_drift_ticks,
                   ") must be below election_timeout_ticks (",
                   election_timeout_ticks, ")");
  }
  if (max_append_bytes == 0 || max_append_entries == 0) {
    return invalid("max_append_bytes and max_append_entries must be > 0");
  }
  if (max_inflight_messages == 0 || max_inflight_bytes == 0) {
    return invalid("max_inflight_messages and max_inflight_bytes must be > 0");
  }
  if (max_uncommitted_bytes < max_append_bytes) {
    return invalid("max_uncommitted_bytes (", max_uncommitted_bytes,
                   ") must be at least max_append_bytes (", max_append_bytes,
                   ")");
  }
  if (max_apply_bytes == 0) return invalid("max_apply_bytes must be > 0");
  if (max_unapplied_bytes != 0 && max_unapplied_bytes < max_apply_bytes) {
    return invalid(
        "max_unapplied_bytes (", max_unapplied_bytes,
        ") must be 0 (no apply window) or at least max_apply_bytes (",
        max_apply_bytes, ")");
  }
  if (max_pending_reads == 0) return invalid("max_pending_reads must be > 0");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Core>> Core::Create(const CoreOptions& options,
                                                   const BootState& boot,
                                                   const LogReader* log) {
  if (auto s = options.Validate(); !s.ok()) return s;
  if (log == nullptr) {
    return absl::InvalidArgumentError("raft core needs a log reader");
  }
  auto impl = std::make_unique<CoreImpl>(options, log);
  if (auto s = impl->Boot(boot); !s.ok()) return s;
  return std::unique_ptr<Core>(new Core(std::move(impl)));
}

Core::Core(std::unique_ptr<CoreImpl> impl) : impl_(std::move(impl)) {}
Core::~Core() = default;

void Core::Tick() { impl_->Tick(); }
void Core::Step(const Message& message) { impl_->Step(message); }
void Core::Step(Message&& message) { impl_->Step(std::move(message)); }
absl::StatusOr<ProposalPosition> Core::Propose(std::vector<std::string> entries) {
  return impl_->Propose(std::move(entries));
}
absl::Status Core::ReadIndex(std::string context, ReadMode mode) {
  return impl_->ReadIndex(std::move(context), mode);
}
absl::StatusOr<ProposalPosition> Core::ProposeMembershipChange(
    const MembershipChange& change) {
  return impl_->ProposeMembershipChange(change);
}
absl::Status Core::TransferLeadership(MemberId to) {
  return impl_->TransferLeadership(to);
}
void Core::ReportDurable(Index index, Term term) {
  impl_->ReportDurable(index, term);
}
void Core::ReportSnapshotInstalled(const SnapshotMeta& meta) {
  impl_->ReportSnapshotInstalled(meta);
}
void Core::ReportApplied(Index index) { impl_->ReportApplied(index); }
void Core::ReportSnapshotSent(MemberId to, bool ok, Index snapshot_index) {
  impl_->ReportSnapshotSent(to, ok, snapshot_index);
}
void Core::ReportUnreachable(MemberId member) {
  impl_->ReportUnreachable(member);
}
bool Core::HasReady() const { return impl_->HasReady(); }
Ready Core::TakeReady() { return impl_->TakeReady(); }
CoreStatus Core::Status() const { return impl_->Status(); }
Role Core::role() const { return impl_->role(); }
Term Core::term() const { return impl_->term(); }
MemberId Core::id() const { return impl_->id(); }
MemberId Core::LeaderId() const { return impl_->leader(); }
Index Core::CommitIndex() const { return impl_->commit(); }
const Membership& Core::membership() const { return impl_->membership(); }
absl::Status Core::CheckInvariants() const { return impl_->CheckInvariants(); }

}  // namespace confman::raft
