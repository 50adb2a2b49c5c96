// The peer directory: where this member reaches the others. Addresses come
// from the options and from the replicated confman.members namespace; after
// every applied membership change (and snapshot install) the transport is
// told about new or moved members and forgets members that left.
#include <charconv>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "node_impl.h"

namespace confman::node_internal {

std::string NodeImpl::AddressOf(raft::MemberId id) const {
  common::MutexLock lock(&peers_mu_);
  auto it = addresses_.find(id);
  return it == addresses_.end() ? std::string() : it->second;
}

// The membership the state has applied; nullopt (logged) if the state
// cannot say, in which case peers are only ever added, never removed.
std::optional<raft::Membership> NodeImpl::AppliedMembership() {
  absl::StatusOr<AppliedState> info = sm_->CurrentAppliedState();
  if (info.ok()) return info->membership;
  Log(LogLevel::kWarning, absl::StrCat("cannot read the applied membership: ",
                                       info.status().ToString()));
  return std::nullopt;
}

void NodeImpl::RefreshPeers(const raft::Membership* previous) {
  absl::StatusOr<kv::ListPage> page =
      sm_->List(kv::ListRequest{.ns = kMembersNamespace, .limit = 10000});
  if (!page.ok()) {
    Log(LogLevel::kWarning, absl::StrCat("cannot read member addresses: ",
                                         page.status().ToString()));
  } else {
    for (const kv::KeyValue& kv : page->items) {
      raft::MemberId id = 0;
      std::from_chars(kv.key.data(), kv.key.data() + kv.key.size(), id);
      if (id == raft::kNoMember || id == id_ || AddressOf(id) == kv.value) continue;
      if (absl::Status added = transport_->AddPeer(id, kv.value); !added.ok()) {
        Log(LogLevel::kWarning,
            absl::StrCat("cannot reach member ", id, " at ", kv.value, ": ",
                         added.ToString()));
        continue;
      }
      common::MutexLock lock(&peers_mu_);
      addresses_[id] = kv.value;
    }
  }
  if (previous == nullptr) return;
  const std::optional<raft::Membership> now = AppliedMembership();
  if (!now) return;
  for (const auto* list : {&previous->voters, &previous->voters_outgoing,
                           &previous->learners}) {
    for (raft::MemberId id : *list) {
      if (id != id_ && !raft::IsMember(*now, id)) transport_->RemovePeer(id);
    }
  }
}

}  // namespace confman::node_internal
