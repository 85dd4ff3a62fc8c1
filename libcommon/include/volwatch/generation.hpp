// Generation tokens against teardown races (seed 003): a timer, watch event
// or child result names its volume by id and generation, never by pointer.
// When the volume vanished or was re-read since, the lookup finds nothing
// and the late arrival is dropped instead of touching freed state.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace volwatch {

struct VolumeToken {
    std::string id;
    std::uint64_t generation = 0;
};

/// Entries keyed by volume id, each stamped with a generation that is never
/// reused: every insert or replace takes the next number.
template <class T>
class GenerationTable {
public:
    /// Inserts or replaces the entry for `id`; returns its token.
    VolumeToken put(const std::string& id, std::unique_ptr<T> value) {
        std::uint64_t generation = ++counter_;
        entries_[id] = Entry{generation, std::move(value)};
        return {id, generation};
    }
    /// Gives the entry for `id` a new generation (it was re-read), so tokens
    /// issued before no longer resolve.
    VolumeToken bump(const std::string& id) {
        auto it = entries_.find(id);
        if (it == entries_.end()) return {id, 0};
        it->second.generation = ++counter_;
        return {id, it->second.generation};
    }
    void erase(const std::string& id) { entries_.erase(id); }
    /// The entry `token` names if it is still current, else nullptr.
    [[nodiscard]] T* find(const VolumeToken& token) const {
        auto it = entries_.find(token.id);
        if (it == entries_.end() || it->second.generation != token.generation) return nullptr;
        return it->second.value.get();
    }
    /// The current entry for `id`, whatever its generation.
    [[nodiscard]] T* find(const std::string& id) const {
        auto it = entries_.find(id);
        return it == entries_.end() ? nullptr : it->second.value.get();
    }
    [[nodiscard]] std::uint64_t generation(const std::string& id) const {
        auto it = entries_.find(id);
        return it == entries_.end() ? 0 : it->second.generation;
    }
    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
    template <class F>
    void for_each(F&& f) const {
        for (const auto& [id, entry] : entries_) f(id, *entry.value);
    }

private:
    struct Entry {
        std::uint64_t generation = 0;
        std::unique_ptr<T> value;
    };
    std::map<std::string, Entry> entries_;
    std::uint64_t counter_ = 0;
};

}  // namespace volwatch
