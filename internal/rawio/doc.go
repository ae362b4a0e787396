// Package rawio makes the reads and writes of a TCP connection without the
// Go runtime's bookkeeping of system calls.
//
// A read or write on a net.Conn is a system call through syscall.Syscall,
// which tells the scheduler that its thread may block: the thread gives up
// its P for the call's length, and, when the runtime's monitor thread
// (sysmon) sleeps because every P was idle, the call wakes it. A proxy that
// idles between requests (two connections, a model taking a millisecond)
// does this on every request: per request, about one futex and one
// nanosleep of sysmon's and two more context switches, about a quarter of
// the proxy's CPU (BENCHMARKS.md). A read or write on a non-blocking socket
// does not block, so it need not be a blocking system call: a Conn makes it
// with syscall.RawSyscall, the way the runtime's own network poller calls
// epoll, and waits for readiness on that poller through syscall.RawConn as
// net.Conn does.
//
// The monitor thread still wakes for timers, for garbage collection and for
// every other system call the process makes. While it sleeps it preempts
// no goroutine, so a goroutine that computes for long without blocking
// runs on until one of those comes; a proxy's goroutines block on their
// connections every few microseconds.
//
// Built with -race, a Conn makes its calls through syscall.Read and
// syscall.Write instead, which tell the race detector what the network
// synchronises (sys_linux_race.go).
//
// Only Linux has a Conn; elsewhere Wrap returns the connection it is given.
package rawio
