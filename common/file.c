/* file: see file.h. */
#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"

int sp_file_write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return SP_E_IO;
        }
        p += w;
        len -= (size_t)w;
    }
    return SP_OK;
}

static int s_fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return SP_E_IO;
    }
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc == 0 ? SP_OK : SP_E_IO;
}

typedef struct {
    const void *data;
    size_t len;
} s_bytes_t;

static int s_fill_bytes(int fd, void *arg)
{
    const s_bytes_t *b = arg;
    return sp_file_write_all(fd, b->data, b->len);
}

int sp_file_write_atomic(const char *path, const void *data, size_t len)
{
    s_bytes_t b = {data, len};
    return sp_file_write_atomic_with(path, s_fill_bytes, &b);
}

int sp_file_write_atomic_with(const char *path, int (*fill)(int fd, void *arg), void *arg)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return SP_E_IO;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return SP_E_IO;
    }
    int rc = fill(fd, arg);
    if (rc == SP_OK && fsync(fd) != 0) {
        rc = SP_E_IO;
    }
    int saved = errno;
    if (close(fd) != 0 && rc == SP_OK) {
        rc = SP_E_IO;
        saved = errno;
    }
    if (rc == SP_OK && rename(tmp, path) != 0) {
        rc = SP_E_IO;
        saved = errno;
    }
    if (rc != SP_OK) {
        unlink(tmp);
        errno = saved;
        return rc;
    }
    return s_fsync_dir_of(path);
}

static int s_remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

int sp_file_remove_tree(const char *path)
{
    /* depth first, so a directory is empty when its turn comes; FTW_PHYS:
     * a link is removed as a link, and what it points to is left alone */
    return nftw(path, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? SP_OK : SP_E_IO;
}
