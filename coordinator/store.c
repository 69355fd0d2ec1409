/* store: durable files in the coordinator's state directory, written either
 * by the caller or by a background writer thread (checkpoints). Whole files
 * go through sp_file_write_atomic (common/file.h), so a crash leaves the old
 * or the new content and at worst a stray "*.tmp" sibling that
 * sp_store_clean_tmp removes at start-up. */
#include "coordinator/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/file.h"

int sp_store_mkdirs(const char *dir)
{
    char path[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) {
        errno = ENAMETOOLONG;
        return SP_E_IO;
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] == '/' || path[i] == '\0') {
            char c = path[i];
            path[i] = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST) {
                return SP_E_IO;
            }
            path[i] = c;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return SP_E_IO;
    }
    return SP_OK;
}

int sp_store_read_all(const char *path, size_t max_bytes, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? SP_E_NOTFOUND : SP_E_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return SP_E_IO;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return SP_E_INPUT;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n > 0 ? n : 1);
    if (b == NULL) {
        close(fd);
        return SP_E_NOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            int saved = errno;
            free(b);
            close(fd);
            errno = saved;
            return SP_E_IO;
        }
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = n;
    return SP_OK;
}

int sp_store_pread(const char *path, uint64_t offset, void *buf, size_t len, size_t *got)
{
    *got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? SP_E_NOTFOUND : SP_E_IO;
    }
    uint8_t *p = buf;
    while (*got < len) {
        ssize_t r = pread(fd, p + *got, len - *got, (off_t)(offset + *got));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return SP_E_IO;
        }
        if (r == 0) {
            break;
        }
        *got += (size_t)r;
    }
    close(fd);
    return SP_OK;
}

int sp_store_append(const char *path, const void *data, size_t len, int sync)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        return SP_E_IO;
    }
    int rc = sp_file_write_all(fd, data, len);
    if (rc == SP_OK && sync && fdatasync(fd) != 0) {
        rc = SP_E_IO;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int sp_store_truncate(const char *path, uint64_t len)
{
    if (truncate(path, (off_t)len) != 0) {
        if (errno == ENOENT && len == 0) {
            return SP_OK;
        }
        return SP_E_IO;
    }
    return SP_OK;
}

int64_t sp_store_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        return -1;
    }
    return (int64_t)st.st_size;
}

void sp_store_clean_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0) {
            char p[PATH_MAX];
            if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p) {
                unlink(p);
            }
        }
    }
    closedir(d);
}

/* --- background writer --------------------------------------------------- */

typedef struct s_item {
    struct s_item *next;
    char path[PATH_MAX];
    uint8_t *buf;
    size_t len;
} s_item_t;

struct sp_store_writer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* signalled on new work, on completion and on stop */
    s_item_t *head, *tail; /* waiting items, FIFO */
    int busy;              /* the thread is writing an item it took */
    int stop;
    int failed; /* a write failed since the last flush */
};

static void *s_writer_main(void *arg)
{
    sp_store_writer_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->head == NULL && !w->stop) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        if (w->head == NULL && w->stop) {
            break;
        }
        s_item_t *it = w->head;
        w->head = it->next;
        if (w->head == NULL) {
            w->tail = NULL;
        }
        w->busy = 1;
        pthread_mutex_unlock(&w->mu);
        int rc = sp_file_write_atomic(it->path, it->buf, it->len);
        if (rc != SP_OK) {
            sp_log(SP_LOG_ERROR, "cannot write %s: %s", it->path, strerror(errno));
        }
        free(it->buf);
        free(it);
        pthread_mutex_lock(&w->mu);
        w->busy = 0;
        w->failed |= rc != SP_OK;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

sp_store_writer_t *sp_store_writer_new(void)
{
    sp_store_writer_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, s_writer_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return NULL;
    }
    return w;
}

int sp_store_writer_put(sp_store_writer_t *w, const char *path, uint8_t **buf, size_t len)
{
    pthread_mutex_lock(&w->mu);
    for (s_item_t *it = w->head; it != NULL; it = it->next) {
        if (strcmp(it->path, path) == 0) {
            free(it->buf);
            it->buf = *buf;
            it->len = len;
            *buf = NULL;
            pthread_mutex_unlock(&w->mu);
            return SP_OK;
        }
    }
    pthread_mutex_unlock(&w->mu);
    s_item_t *it = calloc(1, sizeof *it);
    if (it == NULL || snprintf(it->path, sizeof it->path, "%s", path) >= (int)sizeof it->path) {
        free(it);
        free(*buf);
        *buf = NULL;
        return it == NULL ? SP_E_NOMEM : SP_E_RANGE;
    }
    it->buf = *buf;
    it->len = len;
    *buf = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->tail != NULL) {
        w->tail->next = it;
    } else {
        w->head = it;
    }
    w->tail = it;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return SP_OK;
}

int sp_store_writer_flush(sp_store_writer_t *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->head != NULL || w->busy) {
        pthread_cond_wait(&w->cv, &w->mu);
    }
    int failed = w->failed;
    w->failed = 0;
    pthread_mutex_unlock(&w->mu);
    return failed ? SP_E_IO : SP_OK;
}

void sp_store_writer_destroy(sp_store_writer_t **wp)
{
    sp_store_writer_t *w = *wp;
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    *wp = NULL;
}
