/* store: the coordinator's state directory on disk. Every file that matters is
 * replaced atomically: written to a temporary file in the same directory,
 * fsync'ed, renamed over the target, then the directory is fsync'ed; a reader
 * (or a restart after kill -9) sees either the old or the new content, never
 * a torn file. */
#ifndef SP_COORD_STORE_H
#define SP_COORD_STORE_H

#include <stddef.h>
#include <stdint.h>

/* Creates dir and its parents (mode 0755) when missing. SP_E_IO on failure. */
int sp_store_mkdirs(const char *dir);


/* Reads a whole file into a malloc'ed buffer (caller frees) of at most
 * max_bytes. SP_E_NOTFOUND when missing, SP_E_INPUT when larger than
 * max_bytes, SP_E_IO otherwise. */
int sp_store_read_all(const char *path, size_t max_bytes, uint8_t **buf, size_t *len);

/* Reads up to len bytes at offset of path into buf; *got = bytes read. */
int sp_store_pread(const char *path, uint64_t offset, void *buf, size_t len, size_t *got);

/* Appends len bytes to path (created when missing) and fsyncs when sync != 0. */
int sp_store_append(const char *path, const void *data, size_t len, int sync);

/* Truncates path to len bytes (SP_E_IO on failure, SP_OK when missing and len == 0). */
int sp_store_truncate(const char *path, uint64_t len);

/* Size of path in bytes, or -1 when it does not exist. */
int64_t sp_store_size(const char *path);

/* Removes a file tree's temporary leftovers ("*.tmp") in dir. */
void sp_store_clean_tmp(const char *dir);

/* A background writer: atomic writes queued by the event loop and done by
 * one thread, in order, so that fsync latency never stalls the loop.
 * A queued write to a path that is still waiting is replaced by the newer
 * one (only the newest checkpoint matters). */
typedef struct sp_store_writer sp_store_writer_t;

/* Starts the writer thread; NULL on failure. */
sp_store_writer_t *sp_store_writer_new(void);
/* Queues an atomic write of *buf (len bytes) to path; takes ownership of
 * *buf (sets it to NULL). SP_E_NOMEM when the queue entry cannot be made
 * (the buffer is freed). */
int sp_store_writer_put(sp_store_writer_t *w, const char *path, uint8_t **buf, size_t len);
/* Waits until every queued write is on disk. Returns SP_E_IO if any write
 * since the previous flush failed, else SP_OK. */
int sp_store_writer_flush(sp_store_writer_t *w);
/* Flushes, stops the thread, frees; NULL-safe, sets *wp = NULL. */
void sp_store_writer_destroy(sp_store_writer_t **wp);

#endif
