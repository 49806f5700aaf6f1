#ifndef SWIFTNBD_CGNUTLS_SHIM_H
#define SWIFTNBD_CGNUTLS_SHIM_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <gnutls/abstract.h>
#include <gnutls/socket.h>
#include <gnutls/crypto.h>
#include <string.h>

/* Wrappers for what Swift cannot import from GnuTLS directly: function-like macros,
   the mutable allocator globals (an error to touch from Swift 6) and cast macros. */

/* gnutls_free is a macro over a mutable global function pointer. */
static inline void swiftnbd_gnutls_free(void *pointer) {
    gnutls_free(pointer);
}

/* Key material handed back to GnuTLS from a PSK callback must come from gnutls_malloc. */
static inline void *swiftnbd_gnutls_malloc(size_t size) {
    return gnutls_malloc(size);
}

/* Fills a datum with a gnutls_malloc'ed copy of `bytes`; returns 0 or a negative error. */
static inline int swiftnbd_gnutls_datum_copy(gnutls_datum_t *datum, const void *bytes, unsigned int size) {
    datum->data = (unsigned char *)gnutls_malloc(size == 0 ? 1 : size);
    if (datum->data == NULL) { datum->size = 0; return GNUTLS_E_MEMORY_ERROR; }
    if (size > 0) memcpy(datum->data, bytes, size);
    datum->size = size;
    return 0;
}

static inline void swiftnbd_gnutls_transport_set_fd(gnutls_session_t session, int fd) {
    gnutls_transport_set_int2(session, fd, fd);
}

static inline unsigned int swiftnbd_gnutls_default_handshake_timeout(void) {
    return GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT;
}

static inline unsigned int swiftnbd_gnutls_indefinite_timeout(void) {
    return GNUTLS_INDEFINITE_TIMEOUT;
}

static inline unsigned int swiftnbd_gnutls_curve_to_bits(gnutls_ecc_curve_t curve) {
    return GNUTLS_CURVE_TO_BITS(curve);
}

/* The role flags are both enum cases and #defines; plain ints avoid the ambiguity.
   GNUTLS_NO_SIGNAL: a peer that vanishes mid-send must not raise SIGPIPE (CVE-2017-10664). */
static inline unsigned int swiftnbd_gnutls_server_flags(void) { return GNUTLS_SERVER | GNUTLS_NO_SIGNAL; }
static inline unsigned int swiftnbd_gnutls_client_flags(void) { return GNUTLS_CLIENT | GNUTLS_NO_SIGNAL; }

#endif
