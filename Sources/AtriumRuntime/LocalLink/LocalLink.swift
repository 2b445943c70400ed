/*
 * Copyright 2023, gRPC Authors All rights reserved.
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
// (no Syscalls), `package` initialisers made internal, and no per-method service config.


public import GRPCCore
import Glibc

public struct LocalLink: Sendable {
  /// The server side of this transport pairing.
  ///
  /// Pass this to a `GRPCServer` to accept RPCs that ``client`` makes.
  public let server: Self.Server

  /// The client side of this transport pairing.
  ///
  /// Pass this to a `GRPCClient` to make RPCs that ``server`` handles.
  public let client: Self.Client

  /// Initializes a new ``LocalLink`` pairing a ``Client`` and a ``Server``.
  ///
  /// - Parameters:
  ///   - serviceConfig: Configuration describing how to execute methods.
  /// Messages a writer may be ahead of its reader, in each direction of a stream.
  static let capacity = 2

  public init(serviceConfig: ServiceConfig = ServiceConfig()) {
    let peer = "in-process:\(getpid())"
    self.server = Self.Server(peer: peer)
    self.client = Self.Client(server: self.server, serviceConfig: serviceConfig, peer: peer)
  }
}
