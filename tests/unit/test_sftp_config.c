/* Unit tests of the sftp:// URL parser, the ssh_config reader (first match
 * wins, patterns and negation, Include, Match all, quoting, Key=value) and
 * %-token expansion (src/adapter/sftp/config.c); and the openssh
 * transport's sendfile to an ssh that is gone: an error, not SIGPIPE
 * (src/adapter/sftp/openssh.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "adapter/sftp/sftp.h"
#include "adapter/sftp/sftp_int.h"
#include "treemig.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>

static void test_url(void **state)
{
    struct tm__sftp_url u;
    char err[200];
    (void)state;

    assert_int_equal(tm__sftp_url_parse("sftp://backup@nas.example:2222/volume1/share", &u,
                                        err, sizeof err), 0);
    assert_string_equal(u.user, "backup");
    assert_string_equal(u.host, "nas.example");
    assert_int_equal(u.port, 2222);
    assert_string_equal(u.path, "/volume1/share");
    tm__sftp_url_release(&u);

    assert_int_equal(tm__sftp_url_parse("sftp://h/", &u, err, sizeof err), 0);
    assert_null(u.user);
    assert_int_equal(u.port, 0);
    assert_string_equal(u.path, "/");
    tm__sftp_url_release(&u);

    /* Percent-escapes: '@' in the user, any byte in the path. */
    assert_int_equal(tm__sftp_url_parse("sftp://a%40b@[::1]:22/x%20y/%FF%2f", &u, err,
                                        sizeof err), 0);
    assert_string_equal(u.user, "a@b");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 22);
    assert_string_equal(u.path, "/x y/\xff/");
    tm__sftp_url_release(&u);

    {
        static const char *const bad[] = {
            "sftp://h",            /* no path */
            "sftp://h:0/a",        /* port 0 */
            "sftp://h:65536/a",    /* port too large */
            "sftp://h:2x/a",       /* not a number */
            "sftp://@h/a",         /* empty user */
            "sftp:///a",           /* empty host */
            "sftp://h/a%00b",      /* NUL */
            "sftp://h/a%zz",       /* bad escape */
            "sftp://h/a%4",        /* truncated escape */
            "sftp://[::1/a",       /* no ']' */
            "ssh://h/a",           /* another scheme */
        };
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            err[0] = '\0';
            assert_int_equal(tm__sftp_url_parse(bad[i], &u, err, sizeof err), TM_EBADSPEC);
            assert_true(err[0] != '\0');
            tm__sftp_url_release(&u);
        }
    }
}

static char dir[] = "/tmp/tm-sshcfg-XXXXXX";

static void write_file(const char *name, const char *text)
{
    char path[256];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_config(void **state)
{
    struct tm__ssh_host h;
    char path[256], inc[512], err[300];
    (void)state;

    assert_non_null(mkdtemp(dir));
    write_file("inc-a.conf", "Host srv-*\n  IdentityFile ~/from-include\n  Port 2200\n");
    write_file("inc-b.conf", "Host *\n  HostKeyAlias hka\n");
    snprintf(inc, sizeof inc,
             "# comment\n"
             "Include %s/inc-*.conf\n"
             "Host other !srv-9 *.example\n"
             "  User nope\n"
             "  Include /no/such/file-because-this-block-is-inactive\n"
             "Host srv-1 srv-2\n"
             "  HostName \"10.0.0.1\"\n"
             "  User=alice\n"
             "  Port 2222\n"
             "  IdentityFile %%d/.ssh/first\n"
             "  UserKnownHostsFile /kh/one /kh/two\n"
             "  IdentitiesOnly yes\n"
             "Match exec \"false\"\n"
             "  User from-match\n"
             "Match all\n"
             "  IdentityFile /last\n"
             "  User late\n"
             "  UserKnownHostsFile /kh/late\n"
             "  IdentityAgent none\n",
             dir);
    write_file("config", inc);
    snprintf(path, sizeof path, "%s/config", dir);

    assert_int_equal(tm__ssh_config_read(path, "srv-1", &h, err, sizeof err), 0);
    assert_string_equal(h.hostname, "10.0.0.1");
    assert_string_equal(h.user, "alice");
    assert_int_equal(h.port, 2200); /* the Include came first: first wins */
    assert_string_equal(h.host_key_alias, "hka");
    assert_int_equal(h.n_identity_files, 3); /* IdentityFile accumulates */
    assert_string_equal(h.identity_files[0], "~/from-include");
    assert_string_equal(h.identity_files[1], "%d/.ssh/first");
    assert_string_equal(h.identity_files[2], "/last");
    assert_int_equal(h.n_known_hosts, 2); /* one line, two files; later lines lose */
    assert_string_equal(h.known_hosts[1], "/kh/two");
    assert_int_equal(h.identities_only, 1);
    assert_int_equal(h.identity_agent_none, 1);
    tm__ssh_host_release(&h);

    /* A negated pattern excludes; Match with other criteria never matches. */
    assert_int_equal(tm__ssh_config_read(path, "srv-9", &h, err, sizeof err), 0);
    assert_null(h.hostname);
    assert_string_equal(h.user, "late");
    assert_int_equal(h.port, 2200);
    tm__ssh_host_release(&h);
    assert_int_equal(tm__ssh_config_read(path, "x.example", &h, err, sizeof err), 0);
    assert_string_equal(h.user, "nope");
    tm__ssh_host_release(&h);

    /* Case-insensitive host patterns, as ssh. */
    assert_int_equal(tm__ssh_config_read(path, "SRV-2", &h, err, sizeof err), 0);
    assert_string_equal(h.hostname, "10.0.0.1");
    tm__ssh_host_release(&h);

    /* "none" reads nothing; a missing named file is no setting either. */
    assert_int_equal(tm__ssh_config_read("none", "srv-1", &h, err, sizeof err), 0);
    assert_null(h.user);
    tm__ssh_host_release(&h);

    write_file("bad", "Host a\n  Port 99999\n");
    snprintf(path, sizeof path, "%s/bad", dir);
    err[0] = '\0';
    assert_int_equal(tm__ssh_config_read(path, "a", &h, err, sizeof err), TM_EINVAL);
    assert_non_null(strstr(err, "bad:2"));
    tm__ssh_host_release(&h);

    /* Include loops end with an error, not a crash. */
    snprintf(inc, sizeof inc, "Include %s/loop\n", dir);
    write_file("loop", inc);
    snprintf(path, sizeof path, "%s/loop", dir);
    assert_int_equal(tm__ssh_config_read(path, "a", &h, err, sizeof err), TM_EINVAL);
    tm__ssh_host_release(&h);
}

static void test_expand(void **state)
{
    struct tm__ssh_tokens t = {"alias", "10.0.0.1", "alice", "me", "/home/me", 2222};
    struct tm__buf b = TM__BUF_INIT;
    (void)state;
    assert_int_equal(tm__ssh_expand("~/.ssh/id_%r@%h:%p-%n-%u-%d%%", &t, &b), 0);
    assert_string_equal(b.buf, "/home/me/.ssh/id_alice@10.0.0.1:2222-alias-me-/home/me%");
    tm__buf_reset(&b);
    assert_int_equal(tm__ssh_expand("a~b", &t, &b), 0); /* ~ only at the start */
    assert_string_equal(b.buf, "a~b");
    tm__buf_reset(&b);
    assert_int_equal(tm__ssh_expand("%Z", &t, &b), TM_EINVAL);
    tm__buf_release(&b);
}

static int cleanup(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 0;
}

/* An upload's sendfile into the socket of an ssh that has exited (its
 * master killed): the call fails; SIGPIPE (default action: the process
 * ends) neither ends the process nor stays pending. */
static void test_sendfile_gone(void **state)
{
    char path[] = "/tmp/tm-sendfile-XXXXXX";
    static char data[1 << 20];
    struct tm__sftp_proc pr;
    unsigned char rx[64];
    size_t got = 0;
    sigset_t pend;
    int sv[2], fd, fd_err = 0;
    ssize_t r;
    (void)state;

    fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, data, sizeof data), (ssize_t)sizeof data);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]); /* ssh gone */
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    memset(&pr, 0, sizeof pr);
    pr.fd = sv[0];
    pr.err = -1;
    pr.pid = -1;
    signal(SIGPIPE, SIG_DFL);
    r = tm__sftp_proc_sendfile(&pr, fd, sizeof data, &fd_err, rx, sizeof rx, &got, 1000);
    assert_true(r < 0);
    assert_int_equal(sigpending(&pend), 0);
    assert_false(sigismember(&pend, SIGPIPE));
    close(sv[0]);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_sendfile_gone),
    };
    return cmocka_run_group_tests(tests, NULL, cleanup);
}
