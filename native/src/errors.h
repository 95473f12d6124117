/*
 * Error construction and argument checking shared by every syscall binding.
 *
 * Conventions: a binding returns NULL after throwing. Argument helpers return false after
 * throwing a TypeError ("Expected <nth> argument to be <type>") or RangeError; the ARG_* macros
 * wrap them and return NULL from the binding. Errno failures go through throw_errno().
 */
#ifndef HANDLEFS_ERRORS_H
#define HANDLEFS_ERRORS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <node_api.h>

/* Largest number of arguments any binding takes (utimensat). */
#define MAX_ARGS 8

/* Names are copied into a buffer of this size: PATH_MAX bytes plus the terminating NUL. */
#define NAME_BUF_SIZE (PATH_MAX + 1)

/* Build an errno error: .code ("ENOENT"), .errno (positive), .syscall; message "<code>: <syscall>". */
napi_status make_errno_error(napi_env env, int err, const char *syscall, napi_value *out);
/* Throw it. Always returns NULL so bindings can `return throw_errno(...)`. */
napi_value throw_errno(napi_env env, int err, const char *syscall);
/*
 * The *Try bindings: a failure returns -errno instead of throwing (no Error object is built, which
 * costs several times the syscall), for failures a caller expects on its hot path (ENOENT of a
 * lookup, ENODATA of getxattr). soft = false throws as usual.
 */
napi_value fail_errno(napi_env env, int err, const char *syscall, bool soft);
/*
 * Settle the promise of a finished napi_async_work: rejected when the work was cancelled (status)
 * or failed (err, an errno error naming syscall), else resolved with result (count) or undefined.
 */
void settle_async(napi_env env, napi_deferred deferred, napi_status status, int err, const char *syscall, bool count,
                  int64_t result);
/* Throw a generic Error for a failed napi_* call unless an exception is already pending. */
napi_value throw_napi_failure(napi_env env, napi_status status, const char *what);

/* Argument extraction; idx is zero-based, messages use "first", "second", ... */
bool arg_int(napi_env env, napi_value v, size_t idx, int64_t min, int64_t max, const char *type, int64_t *out);
bool arg_i32(napi_env env, napi_value v, size_t idx, int32_t *out);
bool arg_u32(napi_env env, napi_value v, size_t idx, uint32_t *out);
/* uid_t/gid_t: 0..2^32-1, or -1 meaning "leave unchanged" (passed as (uid_t)-1). */
bool arg_id(napi_env env, napi_value v, size_t idx, uint32_t *out);
/* Any safe integer (|v| <= 2^53 - 1). */
bool arg_safe(napi_env env, napi_value v, size_t idx, int64_t *out);
bool arg_bool(napi_env env, napi_value v, size_t idx, bool *out);
/* A 64-bit signed quantity (a file offset or size, seconds since the epoch): a safe integer, or a
 * bigint in [-2^63, 2^63) for values a number cannot hold exactly. The kernel judges the value. */
bool arg_i64(napi_env env, napi_value v, size_t idx, int64_t *out);
/* A bigint in [-2^63, 2^64); values >= 2^63 are reinterpreted as two's complement. */
bool arg_bigint64(napi_env env, napi_value v, size_t idx, uint64_t *out);
bool arg_buffer(napi_env env, napi_value v, size_t idx, void **data, size_t *len);
/* A Buffer or null; null gives data = NULL, len = 0. */
bool arg_buffer_or_null(napi_env env, napi_value v, size_t idx, void **data, size_t *len);
/* A BigUint64Array with at least min_len elements. */
bool arg_u64array(napi_env env, napi_value v, size_t idx, size_t min_len, uint64_t **data);
/*
 * A Buffer name/path copied NUL-terminated into out (NAME_BUF_SIZE bytes). Throws the errno error
 * ENAMETOOLONG (longer than PATH_MAX) or EINVAL (contains a NUL byte) with the given syscall name.
 */
bool arg_name(napi_env env, napi_value v, size_t idx, const char *syscall, char *out);

/* Throw a TypeError / RangeError with "Expected <nth> argument to be <what>". */
bool throw_arg_type(napi_env env, size_t idx, const char *what);
bool throw_arg_range(napi_env env, size_t idx, const char *what);

#define NAPI_CALL(env, call)                                      \
  do {                                                            \
    napi_status status_ = (call);                                 \
    if (status_ != napi_ok) return throw_napi_failure((env), status_, #call); \
  } while (0)

/* Declares argv[n] (missing arguments read as undefined and fail their type check). */
#define GET_ARGS(env, info, n)                                              \
  size_t argc = (n);                                                        \
  napi_value argv[(n) > 0 ? (n) : 1];                                       \
  NAPI_CALL((env), napi_get_cb_info((env), (info), &argc, argv, NULL, NULL)); \
  for (size_t i_ = argc; i_ < (size_t)(n); i_++) NAPI_CALL((env), napi_get_undefined((env), &argv[i_]))

#define ARG_I32(idx, out)      do { if (!arg_i32(env, argv[idx], (idx), (out))) return NULL; } while (0)
#define ARG_U32(idx, out)      do { if (!arg_u32(env, argv[idx], (idx), (out))) return NULL; } while (0)
#define ARG_ID(idx, out)       do { if (!arg_id(env, argv[idx], (idx), (out))) return NULL; } while (0)
#define ARG_SAFE(idx, out)     do { if (!arg_safe(env, argv[idx], (idx), (out))) return NULL; } while (0)
#define ARG_BOOL(idx, out)     do { if (!arg_bool(env, argv[idx], (idx), (out))) return NULL; } while (0)
#define ARG_I64(idx, out)      do { if (!arg_i64(env, argv[idx], (idx), (out))) return NULL; } while (0)
#define ARG_BIGINT64(idx, out) do { if (!arg_bigint64(env, argv[idx], (idx), (out))) return NULL; } while (0)
#define ARG_BUFFER(idx, d, l)  do { if (!arg_buffer(env, argv[idx], (idx), (d), (l))) return NULL; } while (0)
#define ARG_BUFFER_OR_NULL(idx, d, l) do { if (!arg_buffer_or_null(env, argv[idx], (idx), (d), (l))) return NULL; } while (0)
#define ARG_U64ARRAY(idx, n, out) do { if (!arg_u64array(env, argv[idx], (idx), (n), (out))) return NULL; } while (0)
#define ARG_NAME(idx, sc, out) do { if (!arg_name(env, argv[idx], (idx), (sc), (out))) return NULL; } while (0)

/* Check that [off, off + len) lies within a buffer of buflen bytes; throws RangeError otherwise. */
bool check_range(napi_env env, int64_t off, int64_t len, size_t buflen);

/* Small value constructors (return NULL after throwing). */
napi_value js_undefined(napi_env env);
napi_value js_int(napi_env env, int64_t v);
napi_value js_bool(napi_env env, bool v);

#endif
