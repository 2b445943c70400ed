public import Foundation

/// Ties a child process's life to its parent's, whatever way the parent ends (a clean exit, a crash, SIGKILL).
///
/// The parent names itself in the child's environment (`ATRIUM_PARENT_PID`); the child, on a thread of its own,
/// checks twice a second that its parent is still that process. When the parent dies the kernel hands the child
/// to another (init or a subreaper), so the check fails; the child then sends itself SIGTERM, which is a graceful
/// shutdown for `atrium serve` and `atrium up`, and exits anyway after a grace period.
///
/// Two other ways were tried or weighed and left: Linux's `PR_SET_PDEATHSIG` fires when the parent *thread* that
/// spawned the child ends, and that thread is one of Swift's pooled threads, which may end while the parent lives
/// on; and a pipe or socket whose end-of-file means "parent gone" is one stray `close` anywhere in the parent away
/// from stopping a healthy child (a first version did: in one test run a healthy child stopped during start-up,
/// and the cause was never found).
public enum Lifeline {
    /// The environment key naming the parent a child must not outlive.
    public static let environmentKey = "ATRIUM_PARENT_PID"

    /// Makes `process` (not yet run) end when this process ends, by naming this process in its environment. The
    /// environment must already be set (or it is inherited from this process).
    public static func tie(_ process: Process) {
        var environment = process.environment ?? ProcessInfo.processInfo.environment
        environment[environmentKey] = "\(getpid())"
        process.environment = environment
    }

    /// In a child started with ``tie(_:)``: stops this process when the parent it names is gone. Does nothing
    /// unless `ATRIUM_PARENT_PID` is set.
    public static func watchIfAsked(interval: Duration = .milliseconds(500), gracePeriod: Duration = .seconds(15)) {
        guard let text = ProcessInfo.processInfo.environment[environmentKey], let parent = Int32(text), parent > 1 else { return }
        let pause = useconds_t(clamping: interval.components.seconds * 1_000_000 + interval.components.attoseconds / 1_000_000_000_000)
        let grace = UInt32(clamping: max(1, gracePeriod.components.seconds))
        let thread = Thread {
            while getppid() == parent { usleep(pause) }
            FileHandle.standardError.write(Data("atrium: the parent process \(parent) is gone; stopping\n".utf8))
            kill(getpid(), SIGTERM)
            sleep(grace)
            FileHandle.standardError.write(Data("atrium: still running \(grace) s after the parent went; exiting\n".utf8))
            _exit(75)
        }
        thread.name = "atrium-lifeline"
        thread.start()
    }
}
