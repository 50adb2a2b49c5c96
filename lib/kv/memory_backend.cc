// The in-memory backend: immutable versions of the tables, so every reader
// and snapshot gets a version that never changes under it, exactly like an
// LMDB read transaction. Each table is a persistent treap: an update copies
// only the nodes on the paths it changes (O(log n) per write) and shares
// every other node, and every value, with the versions before it. A
// version's nodes are freed when the last reader of it lets go.
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kv_backend.h"

namespace confman::kv {
namespace {

// A stored value never changes once written; versions share it.
using Value = std::shared_ptr<const std::string>;

struct TreeNode;
using NodePtr = std::shared_ptr<const TreeNode>;

// A treap node: a binary search tree by key and a heap by priority, which
// random priorities keep O(log n) deep whatever order keys arrive in.
struct TreeNode {
  std::string key;
  Value value;
  uint64_t priority = 0;
  NodePtr left;
  NodePtr right;
};

NodePtr MakeNode(std::string key, Value value, uint64_t priority, NodePtr left,
                 NodePtr right) {
  return std::make_shared<const TreeNode>(
      TreeNode{std::move(key), std::move(value), priority, std::move(left),
               std::move(right)});
}

NodePtr WithChildren(const TreeNode& node, NodePtr left, NodePtr right) {
  return MakeNode(node.key, node.value, node.priority, std::move(left),
                  std::move(right));
}

const TreeNode* Find(const NodePtr& root, std::string_view key) {
  const TreeNode* node = root.get();
  while (node != nullptr) {
    const int c = key.compare(node->key);
    if (c == 0) return node;
    node = c < 0 ? node->left.get() : node->right.get();
  }
  return nullptr;
}

// The tree with `key` set to `value`: new nodes on the path to it, rotated
// up while the new node's priority is the larger.
NodePtr Insert(const NodePtr& root, std::string_view key, Value value,
               uint64_t priority) {
  if (root == nullptr) {
    return MakeNode(std::string(key), std::move(value), priority, nullptr,
                    nullptr);
  }
  const int c = key.compare(root->key);
  if (c == 0) {
    return MakeNode(root->key, std::move(value), root->priority, root->left,
                    root->right);
  }
  if (c < 0) {
    NodePtr left = Insert(root->left, key, std::move(value), priority);
    if (left->priority > root->priority) {
      return WithChildren(*left, left->left,
                          WithChildren(*root, left->right, root->right));
    }
    return WithChildren(*root, std::move(left), root->right);
  }
  NodePtr right = Insert(root->right, key, std::move(value), priority);
  if (right->priority > root->priority) {
    return WithChildren(*right, WithChildren(*root, root->left, right->left),
                        right->right);
  }
  return WithChildren(*root, root->left, std::move(right));
}

// Joins two treaps whose keys are all smaller in `low` than in `high`.
NodePtr Merge(const NodePtr& low, const NodePtr& high) {
  if (low == nullptr) return high;
  if (high == nullptr) return low;
  if (low->priority > high->priority) {
    return WithChildren(*low, low->left, Merge(low->right, high));
  }
  return WithChildren(*high, Merge(low, high->left), high->right);
}

// The tree without `key`, which must be present.
NodePtr Erase(const NodePtr& root, std::string_view key) {
  const int c = key.compare(root->key);
  if (c == 0) return Merge(root->left, root->right);
  if (c < 0) return WithChildren(*root, Erase(root->left, key), root->right);
  return WithChildren(*root, root->left, Erase(root->right, key));
}

// Visits nodes with key >= from in key order, until `visit` returns false.
void ScanFrom(const NodePtr& root, std::string_view from,
              const Visitor& visit) {
  // The nodes whose left part is done but which are not yet visited.
  std::vector<const TreeNode*> pending;
  for (const TreeNode* node = root.get(); node != nullptr;) {
    if (node->key >= from) {
      pending.push_back(node);
      node = node->left.get();
    } else {
      node = node->right.get();
    }
  }
  while (!pending.empty()) {
    const TreeNode* node = pending.back();
    pending.pop_back();
    if (!visit(node->key, *node->value)) return;
    for (const TreeNode* n = node->right.get(); n != nullptr;
         n = n->left.get()) {
      pending.push_back(n);
    }
  }
}

// Priorities need only be independent of the keys: a splitmix64 sequence.
uint64_t NextPriority() {
  static std::atomic<uint64_t> state{0x9e3779b97f4a7c15};
  uint64_t z = state.fetch_add(0x9e3779b97f4a7c15, std::memory_order_relaxed);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  return z ^ (z >> 31);
}

// One root per table: copying a version copies kTableCount pointers.
using Tables = std::array<NodePtr, kTableCount>;

// A version outlives the backend's pointer to it while a reader holds it,
// which is why versions are shared.
using Version = std::shared_ptr<const Tables>;

void PutInto(Tables& tables, Table table, std::string_view key, Value value) {
  NodePtr& root = tables[static_cast<size_t>(table)];
  root = Insert(root, key, std::move(value), NextPriority());
}

class MemoryReader : public TableReader {
 public:
  explicit MemoryReader(const Tables* tables) : tables_(tables) {}

  [[nodiscard]] absl::StatusOr<std::optional<std::string_view>> Get(
      Table table, std::string_view key) const override {
    const TreeNode* node = Find((*tables_)[static_cast<size_t>(table)], key);
    if (node == nullptr) return std::optional<std::string_view>();
    return std::optional<std::string_view>(*node->value);
  }

  [[nodiscard]] absl::Status Scan(Table table, std::string_view from,
                                  const Visitor& visit) const override {
    ScanFrom((*tables_)[static_cast<size_t>(table)], from, visit);
    return absl::OkStatus();
  }

 protected:
  const Tables* tables_;
};

class VersionReader : public MemoryReader {
 public:
  explicit VersionReader(Version version)
      : MemoryReader(version.get()), version_(std::move(version)) {}

 private:
  Version version_;
};

class MemoryTableWriter : public TableWriter {
 public:
  explicit MemoryTableWriter(Tables* tables)
      : tables_(tables), reader_(tables) {}

  [[nodiscard]] absl::StatusOr<std::optional<std::string_view>> Get(
      Table table, std::string_view key) const override {
    return reader_.Get(table, key);
  }
  [[nodiscard]] absl::Status Scan(Table table, std::string_view from,
                                  const Visitor& visit) const override {
    return reader_.Scan(table, from, visit);
  }
  [[nodiscard]] absl::Status Put(
      Table table, std::string_view key,
      std::initializer_list<std::string_view> parts) override {
    std::string value;
    for (std::string_view p : parts) value.append(p);
    PutInto(*tables_, table, key,
            std::make_shared<const std::string>(std::move(value)));
    return absl::OkStatus();
  }
  [[nodiscard]] absl::Status Delete(Table table,
                                    std::string_view key) override {
    NodePtr& root = (*tables_)[static_cast<size_t>(table)];
    if (Find(root, key) != nullptr) root = Erase(root, key);
    return absl::OkStatus();
  }

 private:
  Tables* tables_;
  MemoryReader reader_;
};

class MemoryBackend : public KvBackend {
 public:
  MemoryBackend() : current_(std::make_shared<const Tables>()) {}

  [[nodiscard]] absl::StatusOr<std::unique_ptr<TableReader>> BeginRead()
      const override {
    return std::unique_ptr<TableReader>(
        std::make_unique<VersionReader>(current()));
  }

  [[nodiscard]] absl::Status Update(
      const std::function<absl::Status(TableWriter&)>& body) override {
    auto next = std::make_shared<Tables>(*current());
    MemoryTableWriter writer(next.get());
    if (absl::Status status = body(writer); !status.ok()) return status;
    Publish(std::move(next));
    return absl::OkStatus();
  }

  [[nodiscard]] absl::StatusOr<std::unique_ptr<RestoreTarget>> BeginRestore()
      override;

  uint64_t StorageBytes() const override { return 0; }
  [[nodiscard]] absl::Status Sync() override { return absl::OkStatus(); }

  void Publish(std::shared_ptr<const Tables> next) {
    std::lock_guard lock(mu_);
    current_ = std::move(next);
  }

 private:
  Version current() const {
    std::lock_guard lock(mu_);
    return current_;
  }

  mutable std::mutex mu_;
  Version current_;  // Guarded by mu_.
};

class MemoryRestore : public RestoreTarget {
 public:
  explicit MemoryRestore(MemoryBackend* backend)
      : backend_(backend), tables_(std::make_shared<Tables>()) {}

  [[nodiscard]] absl::Status Put(Table table, std::string_view key,
                                 std::string_view value) override {
    PutInto(*tables_, table, key, std::make_shared<const std::string>(value));
    return absl::OkStatus();
  }

  [[nodiscard]] absl::Status Commit() override {
    backend_->Publish(std::move(tables_));
    return absl::OkStatus();
  }

 private:
  MemoryBackend* backend_;
  std::shared_ptr<Tables> tables_;
};

absl::StatusOr<std::unique_ptr<RestoreTarget>> MemoryBackend::BeginRestore() {
  return std::unique_ptr<RestoreTarget>(std::make_unique<MemoryRestore>(this));
}

}  // namespace

std::unique_ptr<KvBackend> NewMemoryBackend() {
  return std::make_unique<MemoryBackend>();
}

}  // namespace confman::kv
