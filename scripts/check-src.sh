#!/usr/bin/env bash
# make check-src: fails on functions the style guide bans (STYLE.md, as
# curl's checksrc does) in the C of src/, cli/ and include/.
#
#   scripts/check-src.sh              checks the tree (exit 1 on a finding)
#   scripts/check-src.sh FILE...      checks these files
#   scripts/check-src.sh --self-test  checks that each rule finds its call,
#                                     and that look-alikes pass (ctest runs it)
#
# Banned, with what to use instead:
#   sprintf, vsprintf              snprintf, or a struct tm__buf (tm__buf_addf)
#   strcpy, stpcpy, strcat,        tm__buf_add*, or memcpy with a known length
#   strncpy, strncat
#   strtok                         strtok_r, or a loop over memchr/strcspn
#   strerror                       tm_strerror(tm__from_errno(errno)) (strerror
#                                  is not thread-safe)
#   gets                           fgets
#   tmpnam, tempnam, mktemp        mkstemp, mkdtemp, O_EXCL
#   scanf family with %s or %[     a width (%63s), or parse by hand
#   without a width
# Comments, string literals and character literals are blanked before the
# search, so a comment may name a banned function. Needs perl (perl-base,
# Essential on Debian).
set -euo pipefail
cd "$(dirname "$0")/.."

check() { # files...: prints "file:line: message" per finding
    perl -e '
        my %use = (
            sprintf => "snprintf or tm__buf_addf", vsprintf => "vsnprintf or tm__buf_addf",
            strcpy => "tm__buf_add or memcpy with a known length", stpcpy => "memcpy with a known length",
            strcat => "tm__buf_add", strncpy => "memcpy with a known length (strncpy may not terminate)",
            strncat => "tm__buf_add", strtok => "strtok_r or strcspn",
            strerror => "tm_strerror(tm__from_errno(errno)) (strerror is not thread-safe)",
            gets => "fgets", tmpnam => "mkstemp", tempnam => "mkstemp", mktemp => "mkstemp or mkdtemp",
        );
        my $names = join "|", sort keys %use;
        my @found;
        for my $file (@ARGV) {
            open my $fh, "<", $file or die "check-src: cannot read $file: $!\n";
            local $/;
            my $src = <$fh>;
            close $fh;
            # blank comments and literals, keeping newlines (line numbers)
            # and the quotes of string literals (the scanf rule reads them)
            my $code = $src;
            $code =~ s{(/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\x27(?:\\.|[^\x27\\\n])*\x27)}{
                my $m = $1;
                if ($m =~ m{^"}) { "\"" . ("s" x (length($m) - 2)) . "\"" }
                else { (my $k = $m) =~ s/[^\n]/ /g; $k }
            }gse;
            while ($code =~ m{(?<![\w.>])($names)\s*\(}g) {
                my $line = 1 + (substr($code, 0, $-[1]) =~ tr/\n//);
                push @found, [$file, $line, "$1() is banned: use $use{$1}"];
            }
            # the scanf family: the format literal of the original text
            while ($code =~ m{(?<![\w.>])((?:v?f|v?s|v)?scanf)\s*\(}g) {
                my ($fn, $at) = ($1, $+[0]);
                my $line = 1 + (substr($code, 0, $-[1]) =~ tr/\n//);
                my $rest = substr($code, $at);
                # the format is the first string literal among the arguments
                next unless $rest =~ m{^[^;"]*?"}s;
                my $start = $at + $+[0] - 1;
                substr($src, $start) =~ m{^"((?:\\.|[^"\\])*)"}s or next;
                my $fmt = $1;
                # %c reads one char; a width bounds %s and %[; %ms allocates
                while ($fmt =~ m{%(\*?)(\d*)(hh|h|ll|l|j|z|t|L|m)?([sc\[])}g) {
                    next if $4 eq "c" || $2 ne "" || ($3 // "") eq "m";
                    push @found, [$file, $line, "$fn() with %$1$4 and no width is banned: give a width (%63s)"];
                }
            }
        }
        print "$_->[0]:$_->[1]: $_->[2]\n"
            for sort { $a->[0] cmp $b->[0] || $a->[1] <=> $b->[1] } @found;
        exit(@found ? 1 : 0);
    ' "$@"
}

self_test() {
    local dir rc out bad_out
    dir=$(mktemp -d "${TMPDIR:-/tmp}/check-src.XXXXXX")
    trap 'rm -rf "$dir"' RETURN
    cat >"$dir/bad.c" <<'EOF'
void f(char *d, const char *s, FILE *fp, int n)
{
    sprintf(d, "%d", n);
    vsprintf(d, "%d", ap);
    strcpy(d, s);
    stpcpy(d, s);
    strcat(d, s);
    strncpy(d, s, 4);
    strncat(d, s, 4);
    (void)strtok(d, ",");
    puts(strerror(n));
    gets(d);
    tmpnam(d);
    tempnam(d, s);
    mktemp(d);
    sscanf(s, "%s", d);
    fscanf(fp, "%d %[a-z]", &n, d);
    scanf("%s", d);
    x = sprintf (d, "%d", n);
}
EOF
    cat >"$dir/good.c" <<'EOF'
/* a comment may say sprintf(d, s), strcpy(d, s) or strerror(errno) */
void g(char *d, const char *s, FILE *fp, int n, struct ops *o)
{
    snprintf(d, 8, "%d", n);
    vsnprintf(d, 8, "%d", ap);
    puts(tm_strerror(n));
    puts(my_strerror(n));
    strerror_r(n, d, 8);
    (void)strtok_r(d, ",", &s);
    fgets(d, 8, fp);
    mkstemp(d);
    sscanf(s, "%63s %d %c %*d %5[a-z] %ms", d, &n, d, d, &d);
    puts("sprintf(d, s) and strcat(d, s) in a string");
    puts("say \"strcpy(x)\" and 'gets(y)'");
    n = ' ';
    o->sprintf(d);
    o.strcat(d);
    memcpy(d, s, 4); /* strncpy(d, s, 4) */
}
EOF
    rc=0
    out=$(check "$dir/bad.c") || rc=$?
    bad_out=$out
    local want=(3:sprintf 4:vsprintf 5:strcpy 6:stpcpy 7:strcat 8:strncpy 9:strncat
                10:strtok 11:strerror 12:gets 13:tmpnam 14:tempnam 15:mktemp 16:sscanf
                17:fscanf 18:scanf 19:sprintf)
    local w failed=0
    [ "$rc" -eq 1 ] || { echo "self-test: bad.c: exit $rc, expected 1" >&2; failed=1; }
    for w in "${want[@]}"; do
        if ! grep -q "^$dir/bad.c:${w%%:*}: ${w#*:}()" <<<"$out"; then
            echo "self-test: bad.c line ${w%%:*}: ${w#*:} not found" >&2
            failed=1
        fi
    done
    if [ "$(grep -c . <<<"$out")" -ne ${#want[@]} ]; then
        echo "self-test: bad.c: $(grep -c . <<<"$out") findings, expected ${#want[@]}" >&2
        failed=1
    fi
    rc=0
    out=$(check "$dir/good.c") || rc=$?
    if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
        printf 'self-test: good.c: exit %s, findings:\n%s\n' "$rc" "$out" >&2
        failed=1
    fi
    [ "$failed" -eq 0 ] || printf 'findings in bad.c:\n%s\n' "$bad_out" >&2
    [ "$failed" -eq 0 ] && echo "check-src self-test: ${#want[@]} banned calls found, no look-alike flagged"
    return "$failed"
}

if [ "${1:-}" = "--self-test" ]; then
    self_test
    exit $?
fi
if [ $# -gt 0 ]; then
    files=("$@")
else
    mapfile -t files < <(find src cli include -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort)
fi
if check "${files[@]}"; then
    echo "check-src: ${#files[@]} files, no banned function"
else
    echo "check-src: banned functions found (STYLE.md; scripts/check-src.sh lists what to use)" >&2
    exit 1
fi
