/* test_file: sp_file_write_atomic replaces a file whole or not at all and
 * leaves no temporary sibling behind either way; sp_file_remove_tree removes
 * a tree without following its links. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h */

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/file.h"

/* Entries of dir other than . and .. */
static int s_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    closedir(d);
    return n;
}

static void s_expect_content(const char *path, const char *want)
{
    char got[64] = "";
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    got[n] = '\0';
    assert_string_equal(got, want);
}

static void test_file_write_replaces_whole(void **state)
{
    (void)state;
    char dir[] = "/tmp/spfile-XXXXXX", path[64], bad[96];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/f", dir);
    assert_int_equal(sp_file_write_atomic(path, "first", 5), SP_OK);
    s_expect_content(path, "first");
    assert_int_equal(sp_file_write_atomic(path, "second!", 7), SP_OK);
    s_expect_content(path, "second!");
    assert_int_equal(s_entries(dir), 1);

    /* a target that cannot be replaced (a directory): an error with errno,
     * the directory untouched, no temporary file left */
    snprintf(bad, sizeof bad, "%s/d", dir);
    assert_int_equal(mkdir(bad, 0700), 0);
    errno = 0;
    assert_int_equal(sp_file_write_atomic(bad, "x", 1), SP_E_IO);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(s_entries(dir), 2);
    /* a missing directory */
    snprintf(bad, sizeof bad, "%s/missing/f", dir);
    assert_int_equal(sp_file_write_atomic(bad, "x", 1), SP_E_IO);
    assert_int_equal(errno, ENOENT);
    s_expect_content(path, "second!");

    snprintf(bad, sizeof bad, "%s/d", dir);
    assert_int_equal(rmdir(bad), 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* Writes "made " then fails with the code in arg (SP_OK: succeeds). */
static int s_fill(int fd, void *arg)
{
    int rc = sp_file_write_all(fd, "made ", 5);
    return rc == SP_OK ? *(const int *)arg : rc;
}

/* Contents made by a callback: written whole, or, when it fails, its code
 * returned, the old file untouched and no sibling left. */
static void test_file_write_with_a_filler(void **state)
{
    (void)state;
    char dir[] = "/tmp/spfile-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/f", dir);
    int code = SP_OK;
    assert_int_equal(sp_file_write_atomic_with(path, s_fill, &code), SP_OK);
    s_expect_content(path, "made ");
    assert_int_equal(sp_file_write_atomic(path, "kept", 4), SP_OK);
    code = SP_E_NOMEM;
    assert_int_equal(sp_file_write_atomic_with(path, s_fill, &code), SP_E_NOMEM);
    s_expect_content(path, "kept");
    assert_int_equal(s_entries(dir), 1);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_file_remove_tree(void **state)
{
    (void)state;
    char outside[] = "/tmp/spfile-out-XXXXXX", root[] = "/tmp/spfile-tree-XXXXXX";
    char p[160], kept[96];
    assert_non_null(mkdtemp(outside));
    assert_non_null(mkdtemp(root));
    snprintf(kept, sizeof kept, "%s/kept", outside);
    s_write(kept, "stays");
    /* root/a, root/sub/b, root/sub/deeper/c, root/sub/empty/, and a link to
     * the outside directory that must not be followed */
    snprintf(p, sizeof p, "%s/a", root);
    s_write(p, "a");
    snprintf(p, sizeof p, "%s/sub", root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/sub/b", root);
    s_write(p, "b");
    snprintf(p, sizeof p, "%s/sub/deeper", root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/sub/deeper/c", root);
    s_write(p, "c");
    snprintf(p, sizeof p, "%s/sub/empty", root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/sub/link", root);
    assert_int_equal(symlink(outside, p), 0);

    assert_int_equal(sp_file_remove_tree(root), SP_OK);
    struct stat st;
    assert_int_equal(lstat(root, &st), -1);
    assert_int_equal(errno, ENOENT);
    s_expect_content(kept, "stays");
    assert_int_equal(s_entries(outside), 1);
    /* gone already: an error, nothing else */
    assert_int_equal(sp_file_remove_tree(root), SP_E_IO);
    /* a plain file is removed too */
    assert_int_equal(sp_file_remove_tree(kept), SP_OK);
    assert_int_equal(s_entries(outside), 0);
    assert_int_equal(rmdir(outside), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_write_replaces_whole),
        cmocka_unit_test(test_file_write_with_a_filler),
        cmocka_unit_test(test_file_remove_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
