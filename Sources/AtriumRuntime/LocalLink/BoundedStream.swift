import GRPCCore
import Synchronization

/// A single-consumer async stream whose writer waits once `capacity` elements are waiting to be read: the
/// backpressure that ``LocalLink`` streams need and `AsyncThrowingStream` does not give.
///
/// A written element is always accepted; the writer then waits until the buffer is below `capacity`, the reader
/// has gone (cancelled, or its iterator dropped), or the stream is finished. Elements written after the reader
/// has gone or after `finish` are dropped, as `AsyncThrowingStream` drops them.
struct BoundedStream<Element: Sendable>: AsyncSequence, Sendable {
    typealias Failure = any Error

    fileprivate final class Storage: Sendable {
        struct State {
            var buffer: [Element] = []
            var head = 0
            var finished = false
            var failure: (any Error)?
            var readerGone = false
            var reader: CheckedContinuation<Element?, any Error>?
            var writers: [(id: Int, continuation: CheckedContinuation<Void, Never>)] = []
            var nextWriter = 0

            var count: Int { buffer.count - head }

            mutating func pop() -> Element {
                let element = buffer[head]
                head += 1
                if head > 64 && head * 2 > buffer.count {
                    buffer.removeFirst(head)
                    head = 0
                }
                return element
            }

            /// Writers that may go on now.
            mutating func releasable(capacity: Int) -> [CheckedContinuation<Void, Never>] {
                guard finished || readerGone || count < capacity else { return [] }
                defer { writers = [] }
                return writers.map(\.continuation)
            }
        }

        let capacity: Int
        let state = Mutex(State())

        init(capacity: Int) { self.capacity = capacity }

        func write(_ element: Element) async {
            let id: Int? = state.withLock { state in
                guard !state.finished, !state.readerGone else { return nil }
                if let reader = state.reader {
                    state.reader = nil
                    reader.resume(returning: element)
                    return nil
                }
                state.buffer.append(element)
                guard state.count >= capacity else { return nil }
                state.nextWriter += 1
                return state.nextWriter
            }
            guard let id else { return }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let resumeNow = state.withLock { state -> Bool in
                        if state.finished || state.readerGone || state.count < capacity || Task.isCancelled { return true }
                        state.writers.append((id, continuation))
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                let waiting = state.withLock { state -> CheckedContinuation<Void, Never>? in
                    guard let index = state.writers.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.writers.remove(at: index).continuation
                }
                waiting?.resume()
            }
        }

        func finish(throwing error: (any Error)?) {
            let (reader, writers, result): (CheckedContinuation<Element?, any Error>?, [CheckedContinuation<Void, Never>], (any Error)?) = state.withLock { state in
                guard !state.finished else { return (nil, [], nil) }
                state.finished = true
                state.failure = error
                let reader = state.count == 0 ? state.reader : nil
                if reader != nil { state.reader = nil }
                return (reader, state.releasable(capacity: capacity), error)
            }
            if let reader {
                if let result { reader.resume(throwing: result) } else { reader.resume(returning: nil) }
            }
            for writer in writers { writer.resume() }
        }

        func next() async throws -> Element? {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Element?, any Error>) in
                    let (outcome, writers): (Result<Element?, any Error>?, [CheckedContinuation<Void, Never>]) = state.withLock { state in
                        if state.count > 0 {
                            let element = state.pop()
                            return (.success(element), state.releasable(capacity: capacity))
                        }
                        if state.finished {
                            let failure = state.failure
                            state.failure = nil
                            return (failure.map { .failure($0) } ?? .success(nil), [])
                        }
                        if state.readerGone || Task.isCancelled {
                            state.readerGone = true
                            return (.success(nil), state.releasable(capacity: capacity))
                        }
                        state.reader = continuation
                        return (nil, [])
                    }
                    for writer in writers { writer.resume() }
                    if let outcome { continuation.resume(with: outcome) }
                }
            } onCancel: {
                readerLeft()
            }
        }

        /// The reader is cancelled or dropped its iterator: nothing will read again.
        func readerLeft() {
            let (reader, writers) = state.withLock { state -> (CheckedContinuation<Element?, any Error>?, [CheckedContinuation<Void, Never>]) in
                state.readerGone = true
                let reader = state.reader
                state.reader = nil
                state.buffer = []
                state.head = 0
                return (reader, state.releasable(capacity: capacity))
            }
            reader?.resume(returning: nil)
            for writer in writers { writer.resume() }
        }
    }

    /// Tells the storage when the iterator is dropped.
    fileprivate final class ReaderToken: Sendable {
        let storage: Storage
        init(_ storage: Storage) { self.storage = storage }
        deinit { storage.readerLeft() }
    }

    private let storage: Storage

    static func makeStream(of: Element.Type = Element.self, capacity: Int) -> (stream: Self, continuation: Continuation) {
        let storage = Storage(capacity: Swift.max(1, capacity))
        return (BoundedStream(storage: storage), Continuation(storage: storage))
    }

    private init(storage: Storage) { self.storage = storage }

    struct Continuation: Sendable {
        fileprivate let storage: Storage

        func finish(throwing error: (any Error)? = nil) { storage.finish(throwing: error) }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(token: ReaderToken(storage)) }

    struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate let token: ReaderToken

        mutating func next() async throws -> Element? { try await token.storage.next() }
    }
}

extension BoundedStream.Continuation: ClosableRPCWriterProtocol {
    func write(_ element: Element) async throws { await storage.write(element) }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        for element in elements { await storage.write(element) }
    }

    func finish() async { storage.finish(throwing: nil) }

    func finish(throwing error: any Error) async { storage.finish(throwing: error) }
}
