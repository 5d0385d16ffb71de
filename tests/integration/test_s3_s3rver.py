#!/usr/bin/env python3
"""The S3 client's cases of test_s3_client.py that s3rver supports, against
s3rver 3.7.1 (npm, installed at test time into $TREEMIG_NPM_CACHE, default
build/npm): PUT/GET/HEAD with rclone's metadata, the awscli cross-check,
paged listing resumed from a stored cursor, multipart with parts in flight,
resume after kill -9 from the recorded parts (s3rver has no ListParts),
CopyObject, empty-folder markers. s3rver knows one key pair (S3RVER /
S3RVER) and has no ListParts, AbortMultipartUpload or UploadPartCopy
(issue 14); those cases, the faults and the secret checks run against
fake_s3 only.

Exits 77 (skipped) only when npm's registry cannot be reached.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'servers'))

import tmtest  # noqa: E402
import s3servers  # noqa: E402
import test_s3_client as T  # noqa: E402


def main():
    if not os.environ.get('S3TOOL'):
        print('S3TOOL is not set (run through ctest)')
        print('0 passed, 1 failed')
        sys.exit(1)
    cache = os.environ.get('TREEMIG_NPM_CACHE') or os.path.join(
        os.path.dirname(os.path.dirname(HERE)), 'build', 'npm')
    tmp = s3servers.tmpdir('s3rver-')
    try:
        srv = s3servers.S3rver(cache, os.path.join(tmp, 'data'), ['bkt'])
    except s3servers.NpmUnreachable as e:
        print('SKIP s3rver: %s' % e)
        sys.exit(77)
    r = tmtest.Runner('test_s3_s3rver')
    home = s3servers.tmpdir('s3home-')
    # s3rver knows one key pair, its own
    env = s3servers.clean_env(home, AWS_ACCESS_KEY_ID='S3RVER', AWS_SECRET_ACCESS_KEY='S3RVER',
                              AWS_DEFAULT_REGION='us-east-1')
    c = T.Ctx(srv, env, 'bkt', os.path.join(tmp, 'files'))
    os.makedirs(c.tmp)
    try:
        for name, fn in (('roundtrip with rclone metadata', T.case_roundtrip_metadata),
                         ('awscli cross-check', T.case_awscli_cross),
                         ('listing 3,100 keys, resumed from a stored cursor',
                          T.case_listing_resume),
                         ('multipart 40 MiB, parts in flight', T.case_multipart_inflight),
                         ('resume after kill -9 from the recorded parts',
                          T.case_resume_after_kill),
                         ('CopyObject', T.case_copy),
                         ('empty-folder markers', T.case_markers)):
            t0 = time.time()
            r.check(name, fn, c)
            print('     (%.1f s)' % (time.time() - t0))
    finally:
        srv.stop()
    r.finish()


if __name__ == '__main__':
    main()
