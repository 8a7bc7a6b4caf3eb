// CFabric: the C edge of the FabricStore module. OpenSSL's libssl for TLS with client
// certificates (several of its calls are macros over SSL_ctrl, which Swift cannot import),
// SHA-256 from libcrypto, and a socket opened inside another network namespace (setns(2) on
// the calling thread, which Glibc's Swift module does not declare). Every function that can
// fail returns a negative value and, where a buffer is given, writes a one-line reason into
// it (OpenSSL's error queue, or strerror), so Swift never reads errno or ERR_get_error later.
#ifndef CFABRIC_H
#define CFABRIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An OpenSSL SSL_CTX, opaque to Swift.
typedef struct cf_tls_ctx cf_tls_ctx;
/// An OpenSSL SSL connection, opaque to Swift.
typedef struct cf_tls cf_tls;

/// Creates a TLS client context (TLS 1.2 or newer) that verifies the server against the PEM
/// bundle `ca_file` and, when `cert_file` and `key_file` are non-NULL, presents that client
/// certificate chain (PEM) and its private key (PEM, unencrypted), checking that they match.
/// Returns NULL and writes the reason into `err` (at most `err_len` bytes) on failure.
cf_tls_ctx *cf_tls_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                           char *err, size_t err_len);

/// Frees a context made by cf_tls_ctx_new (connections hold their own reference).
void cf_tls_ctx_free(cf_tls_ctx *ctx);

/// Wraps the connected, non-blocking socket `fd` (not owned: the caller closes it after
/// cf_tls_free) in a client connection that verifies the server's certificate against
/// `host`: an IP address literal is matched against the certificate's IP SANs, a name
/// against its DNS names (and sent as SNI). Returns NULL with a reason on failure.
cf_tls *cf_tls_new(cf_tls_ctx *ctx, int fd, const char *host, char *err, size_t err_len);

/// Frees a connection (no close_notify is sent: the socket is closed right after).
void cf_tls_free(cf_tls *tls);

/// Results of the non-blocking calls below (besides a byte count >= 0).
enum {
    CF_TLS_WANT_READ = -1,   ///< retry once the socket is readable
    CF_TLS_WANT_WRITE = -2,  ///< retry once the socket is writable
    CF_TLS_ERROR = -3,       ///< failed; the reason is in `err`
};

/// One step of the client handshake: 0 when complete, CF_TLS_WANT_READ / CF_TLS_WANT_WRITE,
/// or CF_TLS_ERROR (a failed certificate verification names OpenSSL's verify error).
int cf_tls_handshake(cf_tls *tls, char *err, size_t err_len);

/// SSL_read: bytes read (> 0), 0 at a clean or unclean end of stream, or a CF_TLS_* code.
long cf_tls_read(cf_tls *tls, void *buf, size_t len, char *err, size_t err_len);

/// SSL_write: bytes written (> 0) or a CF_TLS_* code.
long cf_tls_write(cf_tls *tls, const void *buf, size_t len, char *err, size_t err_len);

/// SHA-256 of `len` bytes at `data` into `out` (32 bytes). Returns 0, or -1 on failure.
int cf_sha256(const void *data, size_t len, uint8_t out[32]);

/// socket(2) created inside the network namespace whose file is `netns_path`
/// (/run/netns/NAME): the calling thread enters it with setns(2), creates the socket and
/// returns to its original namespace (a socket keeps the namespace it was created in).
/// `type` may include SOCK_NONBLOCK | SOCK_CLOEXEC. Needs CAP_SYS_ADMIN. Returns the fd or
/// -errno (-ENOENT: no such namespace); if the thread cannot return to its namespace the
/// process is aborted, since every later socket of that thread would land in the wrong one.
int cf_socket_in_netns(const char *netns_path, int domain, int type, int protocol);

#ifdef __cplusplus
}
#endif

#endif
