#define _GNU_SOURCE
#include "cfabric.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <sys/socket.h>

static void cf_err(char *err, size_t len, const char *what) {
    if (!err || len == 0) return;
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(err, len, "%s: %s", what, buf);
    } else {
        snprintf(err, len, "%s", what);
    }
    ERR_clear_error();
}

cf_tls_ctx *cf_tls_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                           char *err, size_t err_len) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { cf_err(err, err_len, "SSL_CTX_new"); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        char what[512]; snprintf(what, sizeof what, "cannot load CA bundle %s", ca_file);
        cf_err(err, err_len, what); SSL_CTX_free(ctx); return NULL;
    }
    if (cert_file && key_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
            char what[512]; snprintf(what, sizeof what, "cannot load client certificate %s", cert_file);
            cf_err(err, err_len, what); SSL_CTX_free(ctx); return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
            char what[512]; snprintf(what, sizeof what, "cannot load client key %s", key_file);
            cf_err(err, err_len, what); SSL_CTX_free(ctx); return NULL;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            char what[512]; snprintf(what, sizeof what, "client key %s does not match certificate %s", key_file, cert_file);
            cf_err(err, err_len, what); SSL_CTX_free(ctx); return NULL;
        }
    }
    return (cf_tls_ctx *)ctx;
}

void cf_tls_ctx_free(cf_tls_ctx *ctx) { SSL_CTX_free((SSL_CTX *)ctx); }

cf_tls *cf_tls_new(cf_tls_ctx *ctx, int fd, const char *host, char *err, size_t err_len) {
    ERR_clear_error();
    SSL *ssl = SSL_new((SSL_CTX *)ctx);
    if (!ssl) { cf_err(err, err_len, "SSL_new"); return NULL; }
    if (SSL_set_fd(ssl, fd) != 1) { cf_err(err, err_len, "SSL_set_fd"); SSL_free(ssl); return NULL; }
    unsigned char addr[16];
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1) {
            cf_err(err, err_len, "cannot set the expected server IP"); SSL_free(ssl); return NULL;
        }
    } else {
        if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1) {
            cf_err(err, err_len, "cannot set the expected server name"); SSL_free(ssl); return NULL;
        }
    }
    SSL_set_connect_state(ssl);
    return (cf_tls *)ssl;
}

void cf_tls_free(cf_tls *tls) { SSL_free((SSL *)tls); }

static int cf_result(SSL *ssl, int r, char *err, size_t err_len, const char *what) {
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) return CF_TLS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE) return CF_TLS_WANT_WRITE;
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        if (r == 0 || errno == 0) return 0;  /* unexpected EOF: treated as end of stream */
        if (err && err_len) snprintf(err, err_len, "%s: %s", what, strerror(errno));
        return CF_TLS_ERROR;
    }
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
        if (err && err_len)
            snprintf(err, err_len, "%s: server certificate rejected: %s", what, X509_verify_cert_error_string(verify));
        ERR_clear_error();
        return CF_TLS_ERROR;
    }
    cf_err(err, err_len, what);
    return CF_TLS_ERROR;
}

int cf_tls_handshake(cf_tls *tls, char *err, size_t err_len) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake((SSL *)tls);
    if (r == 1) return 0;
    int c = cf_result((SSL *)tls, r, err, err_len, "TLS handshake");
    if (c == 0) {  /* EOF during the handshake: the server refused us (e.g. no client cert) */
        if (err && err_len) snprintf(err, err_len, "TLS handshake: connection closed by the server");
        return CF_TLS_ERROR;
    }
    return c;
}

long cf_tls_read(cf_tls *tls, void *buf, size_t len, char *err, size_t err_len) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_read((SSL *)tls, buf, len > 0x40000000 ? 0x40000000 : (int)len);
    if (r > 0) return r;
    return cf_result((SSL *)tls, r, err, err_len, "TLS read");
}

long cf_tls_write(cf_tls *tls, const void *buf, size_t len, char *err, size_t err_len) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_write((SSL *)tls, buf, len > 0x40000000 ? 0x40000000 : (int)len);
    if (r > 0) return r;
    int c = cf_result((SSL *)tls, r, err, err_len, "TLS write");
    if (c == 0) {
        if (err && err_len) snprintf(err, err_len, "TLS write: connection closed");
        return CF_TLS_ERROR;
    }
    return c;
}

int cf_sha256(const void *data, size_t len, uint8_t out[32]) {
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -1;
}

int cf_socket_in_netns(const char *netns_path, int domain, int type, int protocol) {
    int original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (original < 0) return -errno;
    int target = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (target < 0) { int e = errno; close(original); return -e; }
    if (setns(target, CLONE_NEWNET) != 0) {
        int e = errno; close(target); close(original); return -e;
    }
    int fd = socket(domain, type, protocol);
    int saved = fd < 0 ? errno : 0;
    if (setns(original, CLONE_NEWNET) != 0) {
        fprintf(stderr, "cf_socket_in_netns: cannot return to the original namespace: %s\n", strerror(errno));
        abort();
    }
    close(target);
    close(original);
    return fd < 0 ? -saved : fd;
}
