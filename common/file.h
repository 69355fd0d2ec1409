/* file: whole-file writes that a crash or a failure cannot leave half done.
 * A target is only ever replaced by rename() of a fully written, fsync'ed
 * sibling "<path>.<pid>.tmp", then its directory is fsync'ed; on failure the
 * sibling is removed and the old file, if any, is untouched. */
#ifndef SP_FILE_H
#define SP_FILE_H

#include <stddef.h>

/* Writes all len bytes to fd (retrying short writes and EINTR). SP_OK or
 * SP_E_IO with errno kept. */
int sp_file_write_all(int fd, const void *data, size_t len);
/* Replaces path with len bytes of data as above. SP_OK, or SP_E_IO with
 * errno kept (ENAMETOOLONG for a path too long to add the suffix to). */
int sp_file_write_atomic(const char *path, const void *data, size_t len);
/* The same with the contents written by fill(fd, arg) to the sibling's fd,
 * for contents made piece by piece; fill returns SP_OK or an error code,
 * which is returned (the sibling removed, path untouched). */
int sp_file_write_atomic_with(const char *path, int (*fill)(int fd, void *arg), void *arg);
/* Removes path and, when it is a directory, everything below it (symbolic
 * links are removed, never followed). SP_OK, or SP_E_IO at the first entry
 * that cannot be removed or when path is absent. */
int sp_file_remove_tree(const char *path);

#endif
