// An in-process MongoDB server for tests. No mongod can be installed here, so the
// MongoDB tier is tested against this: it speaks the wire protocol mongo-c-driver 1.23
// uses (OP_MSG with document sequences, and OP_QUERY/OP_REPLY for the legacy handshake)
// and keeps databases -> collections -> documents in memory with MongoDB's semantics
// for the commands the tier needs (see the .cpp for the exact list). Whatever it does
// not implement fails loudly with a command error (code 59 for unknown commands, code 2
// for unsupported operators or dotted update paths) rather than answering wrongly.
//
// It presents itself as a standalone MongoDB 5.0 (maxWireVersion 13). It never sends
// `topologyVersion`, so drivers poll it with `hello` instead of using the streaming
// protocol. Nothing expires by itself: TTL indexes act only when a test calls
// expire_ttl_now(), which makes expiry deterministic (mongod deletes lazily, too).
//
// Threads: one accept thread and one thread per connection. Every public member is
// thread-safe. Start-up and restart failures throw std::system_error.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cachecar::test {

class mongo_test_server {
public:
    // Wire-protocol opcodes, for opcode_count().
    static constexpr std::int32_t op_reply = 1;
    static constexpr std::int32_t op_query = 2004;
    static constexpr std::int32_t op_msg = 2013;

    // Listens on 127.0.0.1:`port` (0: a free port the kernel picks) and returns once
    // connections are accepted. Throws std::system_error if the port cannot be bound.
    explicit mongo_test_server(std::uint16_t port = 0);
    ~mongo_test_server();  // stop()
    mongo_test_server(const mongo_test_server&) = delete;
    mongo_test_server& operator=(const mongo_test_server&) = delete;

    std::uint16_t port() const;
    // "mongodb://127.0.0.1:PORT/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000",
    // then "&" + `extra_options` when given (e.g. "socketTimeoutMS=300"). The two
    // timeouts make a stopped or stalled server fail within about a second instead of
    // mongoc's defaults (30 s selection, 10 s connect).
    std::string uri(const std::string& extra_options = {}) const;
    bool running() const;

    // --- Faults -------------------------------------------------------------------
    // While stalled, requests are still read (and counted) but not executed or
    // answered; un-stalling executes and answers them in order. A connection dropped or
    // stopped while stalled never executes its pending request. Survives stop/restart.
    void stall(bool on);
    bool stalled() const;
    // Closes every open connection (the listener stays up) and returns once their
    // threads have finished. Clients see a reset/EOF on their next read.
    void drop_connections();
    std::size_t connection_count() const;
    // Closes the listener (new connections are refused) and every connection. Idempotent.
    void stop();
    // Listens again on the same port (stopping first if running). Data is kept unless
    // `wipe`; open cursors are always lost, as with a real restart. Throws
    // std::system_error if the port has been taken meanwhile.
    void restart(bool wipe = false);

    // --- Inspection and planting -----------------------------------------------------
    // How many times a command named exactly `name` was received (the first key of the
    // command document, as the client spelled it: "isMaster" and "ismaster" differ).
    // Counted on receipt, so stalled requests count too.
    std::size_t command_count(const std::string& name) const;
    // How many messages with this opcode were received (op_query, op_msg, ...).
    std::size_t opcode_count(std::int32_t opcode) const;
    void reset_counts();
    // Every document of db.coll in natural (insertion) order, as canonical extended
    // JSON; empty if the collection does not exist.
    std::vector<std::string> documents(const std::string& db, const std::string& coll) const;
    // Plants a document given as (canonical or relaxed) extended JSON, bypassing
    // unique-index checks: it replaces the document with the same `_id`, or is
    // appended (with a generated ObjectId `_id` if it has none). Creates the
    // collection. Throws std::invalid_argument if the JSON does not parse.
    void insert_raw(const std::string& db, const std::string& coll, const std::string& json);
    // Deletes, in every collection, the documents a TTL index says have expired at
    // `now` (indexed field a date, or an array whose earliest date, plus
    // expireAfterSeconds is not after `now`), as mongod's TTL monitor would. Returns
    // how many were deleted.
    std::size_t expire_ttl_now(std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace cachecar::test
