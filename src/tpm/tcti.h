// The TCTI under TpmContext: tpm2-tss's loader for every TCTI string, except `swtpm:` strings,
// which get our own swtpm transport that keeps its socket open between commands.
//
// Why: tpm2-tss 3.2.1's swtpm TCTI opens a new TCP connection for every command (socket,
// connect, write, read, read, close: measured with strace on a TPM2_Sign loop), which costs
// about 60 us per command across client and swtpm, roughly a tenth of an ECDSA TPM2_Sign on
// swtpm. swtpm's command socket serves one connection at a time, so a connection held forever
// would lock every other process (tpm2-tools, another agent) out of the TPM. The transport
// therefore closes its connection once it has been idle for WIMSE_SWTPM_IDLE_MS milliseconds
// (default 5; 0 closes it after every response, like tpm2-tss). While a burst of commands runs,
// other clients of the same swtpm wait at most until the burst pauses for that long.
//
// Accepted: `swtpm`, `swtpm:` followed by comma-separated `host=H` (name or address, default
// localhost), `port=P` (default 2321) or `path=SOCKET` (a Unix socket). Any other key sends the
// string to tpm2-tss's loader unchanged. The control channel (port+1) is not used: no locality
// or power commands are sent.
#ifndef WIMSE_TPM_TCTI_H_
#define WIMSE_TPM_TCTI_H_

#include <tss2/tss2_tcti.h>

#include <cstdint>
#include <string>

namespace wimse::tpm {

// Opens the TCTI for `conf` into *out (owned by the caller: CloseTcti). swtpm strings (see
// above) get the persistent transport, which does not connect here: the first command does.
// Everything else goes to Tss2_TctiLdr_Initialize. Returns its response code.
TSS2_RC OpenTcti(const std::string& conf, TSS2_TCTI_CONTEXT** out);

// Finalizes and frees a context from OpenTcti (either kind) and sets *ctx to null; use this, not
// Tss2_Tcti_Finalize (the persistent transport frees its own memory when finalized). Must be called
// in the process that opened it; after fork() the child abandons the parent's context instead (its
// copy of the socket is already closed by a fork handler).
void CloseTcti(TSS2_TCTI_CONTEXT** ctx);

// Counters of a persistent swtpm transport (all zero for other TCTIs). For tests and diagnostics.
struct TransportStats {
  bool persistent = false;
  uint64_t connections = 0;  // connections opened
  uint64_t commands = 0;     // commands sent
  uint64_t idle_closes = 0;  // connections closed after the idle period
  uint64_t errors = 0;       // I/O failures (connect, send, receive, timeout, malformed)
  std::string last_error;    // the last socket failure ("connect to ...: Connection refused")
};
TransportStats GetTransportStats(TSS2_TCTI_CONTEXT* ctx);

// What TpmContext needs to know before and after each Run(), without copying strings.
struct TransportState {
  bool persistent = false;   // our swtpm transport (false: tpm2-tss's loader)
  bool open = false;         // a connection is open now
  uint64_t connections = 0;  // connections opened so far (the current one's number when open)
  uint64_t errors = 0;       // I/O failures so far
  int idle_ms = 0;
};
TransportState GetTransportState(TSS2_TCTI_CONTEXT* ctx);

// Called by a persistent swtpm transport's idle thread when the connection has been idle for the
// idle period, just before it closes it, with no transport lock held. The hook may send commands
// through the same transport (TpmContext flushes the objects and sessions it keeps loaded, so
// the next client of a TPM without a resource manager finds its slots free); while it runs the
// transport never reconnects (a command on a connection the server closed fails instead: the
// hook must not act on another connection's TPM state). It returns false when its owner is busy
// (a thread between two commands of one operation): the connection then stays open for another
// idle period. Otherwise it is closed unless a command started meanwhile. The hook must not
// block on anything a thread inside a TPM command may hold (use try_lock).
using IdleHook = bool (*)(void* arg);
// Installs `hook(arg)` on a transport from OpenTcti; a no-op for other TCTIs. Set it before the
// first command; it stays until the transport is closed (CloseTcti joins the idle thread, so the
// hook never runs after CloseTcti returns).
void SetIdleHook(TSS2_TCTI_CONTEXT* ctx, IdleHook hook, void* arg);

// Installs the transport's fork handlers (once per process; OpenTcti does it too). Code that
// installs fork handlers which must run before the transport's (handlers registered later run
// their prepare step first) calls this before its own pthread_atfork.
void InstallTransportForkHandlers();

// How long a command waits for swtpm's response before the connection is dropped with an I/O
// error naming the endpoint: WIMSE_SWTPM_TIMEOUT_MS (default 120000, 100..3600000; values that
// do not parse fall back to the default).
int SwtpmResponseTimeoutMilliseconds();

// The idle period in milliseconds from WIMSE_SWTPM_IDLE_MS (default 5, at most 60000; values that
// do not parse fall back to the default).
int SwtpmIdleMilliseconds();

}  // namespace wimse::tpm

#endif  // WIMSE_TPM_TCTI_H_
