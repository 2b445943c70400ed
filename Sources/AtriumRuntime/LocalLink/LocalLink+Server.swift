/*
 * Copyright 2024, gRPC Authors All rights reserved.
 *
 * Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

// A copy of grpc-swift-2 2.4.3's `LocalLink` (Sources/GRPCLocalLink), renamed `LocalLink`,
// whose streams are bounded (``BoundedStream``): a writer waits once its peer has not read `capacity` messages,
// as HTTP/2 flow control makes it wait between processes. Upstream's streams are unbounded, so in one process a
// fast producer (delivery streaming a 50-image fetch) piled every message up in memory ahead of a slow consumer
// (the gateway relaying to a client over TLS). Changes from upstream: the type names, the stream type, the peer
// (no Syscalls), and `package` initialisers made internal.


public import GRPCCore
private import Synchronization

extension LocalLink {
  /// An in-process implementation of a `ServerTransport`.
  ///
  /// This is useful when you're interested in testing your application without any actual networking layers
  /// involved, as the client and server will communicate directly with each other via in-process streams.
  ///
  /// To use this server, you call ``listen(streamHandler:)`` and iterate over the returned `AsyncSequence` to get all
  /// RPC requests that clients make (as `RPCStream`s).
  /// To stop listening to new requests, call ``beginGracefulShutdown()``.
  ///
  /// - SeeAlso: `ServerTransport`
  public final class Server: ServerTransport, Sendable {
    /// The type of bytes this server sends and receives: an array of bytes.
    public typealias Bytes = [UInt8]

    /// The stream of inbound requests this server receives.
    public typealias Inbound = RPCAsyncSequence<RPCRequestPart<Bytes>, any Error>
    /// The writer this server uses to send outbound responses.
    public typealias Outbound = RPCWriter<RPCResponsePart<Bytes>>.Closable

    private let newStreams: AsyncStream<RPCStream<Inbound, Outbound>>
    private let newStreamsContinuation: AsyncStream<RPCStream<Inbound, Outbound>>.Continuation
    let peer: String

    private struct State: Sendable {
      private var _nextID: UInt64
      private var handles: [UInt64: ServerContext.RPCCancellationHandle]
      private var isShutdown: Bool

      private mutating func nextID() -> UInt64 {
        let id = self._nextID
        self._nextID &+= 1
        return id
      }

      init() {
        self._nextID = 0
        self.handles = [:]
        self.isShutdown = false
      }

      mutating func addHandle(_ handle: ServerContext.RPCCancellationHandle) -> (UInt64, Bool) {
        let handleID = self.nextID()
        self.handles[handleID] = handle
        return (handleID, self.isShutdown)
      }

      mutating func removeHandle(withID id: UInt64) {
        self.handles.removeValue(forKey: id)
      }

      mutating func beginShutdown() -> [ServerContext.RPCCancellationHandle] {
        self.isShutdown = true
        let values = Array(self.handles.values)
        self.handles.removeAll()
        return values
      }
    }

    private let handles: Mutex<State>

    /// Creates a new instance of ``Server``.
    ///
    /// - Parameters:
    ///   - peer: The system's PID for the running client and server.
    init(peer: String) {
      (self.newStreams, self.newStreamsContinuation) = AsyncStream.makeStream()
      self.handles = Mutex(State())
      self.peer = peer
    }

    /// Publish a new ``RPCStream``, which the transport's ``events`` successful case returns.
    ///
    /// - Parameter stream: The new ``RPCStream`` to publish.
    /// - Throws: ``RPCError`` with code ``RPCError/Code-swift.struct/failedPrecondition``
    /// if the server transport stopped listening to new streams (i.e., if you have already called
    /// ``beginGracefulShutdown()``).
    internal func acceptStream(_ stream: RPCStream<Inbound, Outbound>) throws {
      let yieldResult = self.newStreamsContinuation.yield(stream)
      if case .terminated = yieldResult {
        throw RPCError(
          code: .failedPrecondition,
          message: "The server transport is closed."
        )
      }
    }

    /// Starts the server, listening for new streams that an in-process client opens.
    ///
    /// This function returns only once you have called ``beginGracefulShutdown()`` and every
    /// in-flight stream has finished, or when the calling task is cancelled. Call this from a
    /// long-running task, typically inside a task group alongside the client's `connect()`.
    ///
    /// - Parameter streamHandler: A closure that this method invokes with each new `RPCStream` and
    ///   its `ServerContext`; it's responsible for handling the RPC.
    public func listen(
      streamHandler:
        @escaping @Sendable (
          _ stream: RPCStream<Inbound, Outbound>,
          _ context: ServerContext
        ) async -> Void
    ) async throws {
      await withDiscardingTaskGroup { group in
        for await stream in self.newStreams {
          group.addTask {
            await withServerContextRPCCancellationHandle { handle in
              let (id, isShutdown) = self.handles.withLock({ $0.addHandle(handle) })
              defer {
                self.handles.withLock { $0.removeHandle(withID: id) }
              }

              // This happens if `beginGracefulShutdown` is called after the stream is added to
              // new streams but before it's dequeued.
              if isShutdown {
                handle.cancel()
              }

              let context = ServerContext(
                descriptor: stream.descriptor,
                remotePeer: self.peer,
                localPeer: self.peer,
                cancellation: handle
              )
              await streamHandler(stream, context)
            }
          }
        }
      }
    }

    /// Stops listening to any new `RPCStream` publications.
    ///
    /// - SeeAlso: `ServerTransport`
    public func beginGracefulShutdown() {
      self.newStreamsContinuation.finish()
      for handle in self.handles.withLock({ $0.beginShutdown() }) {
        handle.cancel()
      }
    }
  }
}
