#!/usr/bin/env python3
"""fake_s3.py - a small S3 endpoint for the tests, with faults on demand.

Python 3 standard library only. It checks every request's AWS Signature
Version 4 (the algorithm of src/adapter/s3/sigv4.c, checked against AWS's
published vectors by --selftest), Content-MD5 and x-amz-content-sha256, and
implements what treemig's S3 client uses: ListObjectsV2 (prefix, delimiter,
max-keys, continuation-token, start-after, encoding-type=url; and v1's
marker and NextMarker, which rclone uses), HEAD, GET
(ranges), PUT, DELETE, CopyObject, multipart (create, upload part, upload
part copy, list parts, complete, abort, list uploads). Objects live in
memory.

    fake_s3.py [--host 127.0.0.1] [--port 0] --access-key AK --secret-key SK
               [--token TOKEN] [--region us-east-1] [--bucket NAME]...
               [--vhost-domain DOMAIN] [--min-part-size BYTES]
               [--max-parts-page N]
    fake_s3.py --selftest

It prints "PORT <n>" on stdout once it listens (port 0 picks a free one),
and serves until killed. Unsigned control requests under /__ctl/ drive the
faults and read the counters; they are answered on 127.0.0.1 only: fault
{op, kind, count, after, retry_after, ms, pages} (kinds: slowdown, throttle429,
error500, badsig, echo_token, reset, truncate, truncated_page, error200,
delay: answer ms later), clear, hold {parts}, reset_stats, bucket {name},
fill {bucket, prefix, n, size, meta}, put {bucket, key, data, meta} (an
object from another writer), conditional {answer} (a PUT's If-None-Match:
"ok" honours it, 412 PreconditionFailed when the key is there; "ignore";
501 or 400 refuse it, as servers without conditional writes do); each answers the counters (requests
per operation, parts, the log of listing requests with their start-after,
the keys HEADed),
the open uploads and the server's CPU seconds so far (cpu_s).
"""

import base64
import bisect
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EMPTY_SHA = hashlib.sha256(b'').hexdigest()
NS = 'http://s3.amazonaws.com/doc/2006-03-01/'


# ---------------------------------------------------------------- SigV4

def sigv4_encode(s, keep_slash=False):
    if isinstance(s, str):
        s = s.encode('utf-8', 'surrogateescape')
    out = []
    for c in s:
        ch = chr(c)
        if (ch.isascii() and (ch.isalnum() or ch in '-_.~')) or \
                (keep_slash and ch == '/'):
            out.append(ch)
        else:
            out.append('%%%02X' % c)
    return ''.join(out)


def canonical_query(pairs):
    """pairs: (name, value or None), raw. Returns the signed form."""
    q = sorted((sigv4_encode(k), sigv4_encode(v) if v is not None else '')
               for k, v in pairs)
    return '&'.join('%s=%s' % kv for kv in q)


def sigv4(method, raw_path, query_pairs, headers, signed, payload_hash,
          amz_date, region, service, secret):
    """headers: list of (name, value) as received. Returns (creq, sts,
    signature hex)."""
    vals = {}
    for k, v in headers:
        k = k.lower()
        if k in signed:
            vals.setdefault(k, []).append(' '.join(v.split()))
    creq = '\n'.join([
        method, sigv4_encode(raw_path, True), canonical_query(query_pairs),
        ''.join('%s:%s\n' % (n, ','.join(vals.get(n, []))) for n in signed),
        ';'.join(signed), payload_hash])
    day = amz_date[:8]
    sts = '\n'.join(['AWS4-HMAC-SHA256', amz_date,
                     '%s/%s/%s/aws4_request' % (day, region, service),
                     hashlib.sha256(creq.encode('utf-8', 'surrogateescape')).hexdigest()])
    k = ('AWS4' + secret).encode()
    for m in (day, region, service, 'aws4_request'):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    return creq, sts, hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()


def selftest():
    """A few of AWS's published vectors (see tests/unit/test_s3_sigv4.c for
    the sources); exits non-zero when the server's signer disagrees."""
    sk = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'
    d = '20150830T123600Z'
    h = [('Host', 'example.amazonaws.com'), ('X-Amz-Date', d)]
    cases = [
        ('GET', '/', [], h, ['host', 'x-amz-date'], EMPTY_SHA, sk, 'service', d,
         '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31'),
        ('GET', '/', [('Param2', 'value2'), ('Param1', 'value1')], h,
         ['host', 'x-amz-date'], EMPTY_SHA, sk, 'service', d,
         'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500'),
        ('POST', '/', [], [('Content-Type', 'application/x-www-form-urlencoded')] + h,
         ['content-type', 'host', 'x-amz-date'],
         hashlib.sha256(b'Param1=value1').hexdigest(), sk, 'service', d,
         'ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a'),
        ('GET', '/', [('lifecycle', None)],
         [('Host', 'examplebucket.s3.amazonaws.com'), ('x-amz-date', '20130524T000000Z'),
          ('x-amz-content-sha256', EMPTY_SHA)],
         ['host', 'x-amz-content-sha256', 'x-amz-date'], EMPTY_SHA,
         'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 's3', '20130524T000000Z',
         'fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543'),
    ]
    bad = 0
    for m, p, q, hd, sh, ph, secret, svc, date, want in cases:
        got = sigv4(m, p, q, hd, sh, ph, date, 'us-east-1', svc, secret)[2]
        if got != want:
            print('selftest: %s %s %r: %s, expected %s' % (m, p, q, got, want))
            bad += 1
    print('selftest: %d vectors, %d wrong' % (len(cases), bad))
    return 1 if bad else 0


# ---------------------------------------------------------------- state

class Obj:
    def __init__(self, data, meta, storage_class, content_type, etag=None):
        self.data = data
        self.meta = meta
        self.storage_class = storage_class
        self.content_type = content_type
        self.etag = etag or hashlib.md5(data).hexdigest()
        self.mtime = time.time()


class Bucket(dict):
    """A bucket's objects by key; keeps its keys sorted (as S3 lists them:
    by their UTF-8 bytes) between changes of the key set, so that a
    listing of a bucket of many keys costs a search, not a sort."""

    def __init__(self):
        super().__init__()
        self.gen = 0            # bumped when a key comes or goes
        self.sorted_gen = -1    # the gen the sorted lists are of
        self.kbs = []           # the keys' bytes, sorted
        self.ks = []            # the keys in the same order

    def __setitem__(self, k, v):
        if k not in self:
            self.gen += 1
        super().__setitem__(k, v)

    def __delitem__(self, k):
        self.gen += 1
        super().__delitem__(k)

    def pop(self, k, *d):
        if k in self:
            self.gen += 1
        return super().pop(k, *d)

    def sorted_keys(self):
        """(kbs, ks); the caller holds the state's lock."""
        if self.sorted_gen != self.gen:
            pairs = sorted((k.encode('utf-8', 'surrogateescape'), k) for k in self)
            self.kbs = [p[0] for p in pairs]
            self.ks = [p[1] for p in pairs]
            self.sorted_gen = self.gen
        return self.kbs, self.ks


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.buckets = {b: Bucket() for b in args.bucket}
        self.uploads = {}       # id -> dict(bucket, key, meta, parts{n: (data, etag)})
        self.faults = []        # dicts: op, kind, count, after, retry_after
        self.stats = {'requests': {}, 'parts_in_flight': 0,
                      'max_parts_in_flight': 0, 'parts_received': 0,
                      'puts_without_md5': 0, 'bodies_signed': 0,
                      'bodies_unsigned': 0}
        self.conditional = 'ok'  # a PUT with If-None-Match: 'ok' (412 when
                                 # the key is there), 'ignore', or a status
                                 # (501, 400) refusing the header
        self.hold = 0           # parts to gather before answering any
        self.hold_released = False
        self.hold_timeout = 10.0
        self.args = args

    def take_fault(self, op, q):
        with self.lock:
            for f in self.faults:
                if f['op'] not in (op, 'any') or f['count'] <= 0:
                    continue
                if f.get('pages') and int(q.get('max-keys') or 1000) <= 1:
                    continue  # a fault for listing pages, not one-key probes
                if f.get('after', 0) > 0:
                    f['after'] -= 1
                    continue
                f['count'] -= 1
                return dict(f)
        return None


def xml_doc(root, children):
    """children: list of (name, text or list-of-children)."""
    def build(parent, items):
        for name, val in items:
            e = ET.SubElement(parent, name)
            if isinstance(val, list):
                build(e, val)
            else:
                e.text = val
    r = ET.Element(root, xmlns=NS) if root != 'Error' else ET.Element(root)
    build(r, children)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(r)


def iso(t):
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t)) + '.%03dZ' % (int(t * 1000) % 1000)


class S3Error(Exception):
    def __init__(self, status, code, message, headers=None):
        Exception.__init__(self, code)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


# ---------------------------------------------------------------- handler

class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'fake_s3'

    def log_message(self, fmt, *a):  # quiet
        pass

    def handle(self):
        # a client that hangs up (a reset, a killed driver) is no error here
        try:
            BaseHTTPRequestHandler.handle(self)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    # -- plumbing
    def send(self, status, body=b'', headers=None, head=False):
        self.send_response(status)
        hs = dict(headers or {})
        if 'Content-Length' not in hs:
            hs['Content-Length'] = str(len(body))
        for k, v in hs.items():
            self.send_header(k, v)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def send_error_xml(self, e, head=False):
        body = b'' if head else xml_doc('Error', [('Code', e.code), ('Message', e.message),
                                                  ('RequestId', uuid.uuid4().hex)])
        hs = {'Content-Type': 'application/xml'}
        hs.update(e.headers)
        self.send(e.status, body, hs, head)

    def reset(self):
        """Ends the connection with a TCP reset, no answer."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack('ii', 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def read_body(self):
        n = int(self.headers.get('Content-Length') or 0)
        data = b''
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                raise ConnectionError('body cut short')
            data += chunk
        return data

    def route(self):
        """(bucket, key, raw query pairs, query dict)."""
        st = self.server.state
        raw_path, _, raw_q = self.path.partition('?')
        pairs = []
        for part in raw_q.split('&') if raw_q else []:
            k, eq, v = part.partition('=')
            pairs.append((urllib.parse.unquote(k), urllib.parse.unquote(v) if eq else None))
        path = urllib.parse.unquote(raw_path, errors='surrogateescape')
        host = (self.headers.get('Host') or '').split(':')[0]
        dom = st.args.vhost_domain
        if dom and host.endswith('.' + dom):
            bucket = host[:-len(dom) - 1]
            key = path[1:]
        else:
            p = path[1:]
            bucket, _, key = p.partition('/')
        q = {k: (v if v is not None else '') for k, v in pairs}
        return bucket, key, pairs, q, path

    def check_auth(self, pairs, path, body):
        st = self.server.state
        a = st.args
        auth = self.headers.get('Authorization') or ''
        if not auth.startswith('AWS4-HMAC-SHA256 '):
            raise S3Error(403, 'AccessDenied', 'Anonymous access is forbidden')
        fields = {}
        for part in auth[len('AWS4-HMAC-SHA256 '):].split(','):
            k, _, v = part.strip().partition('=')
            fields[k] = v
        cred = fields.get('Credential', '').split('/')
        if len(cred) != 5 or cred[0] != a.access_key:
            raise S3Error(403, 'InvalidAccessKeyId',
                          'The AWS Access Key Id you provided does not exist in our records.')
        amz_date = self.headers.get('x-amz-date') or ''
        try:
            t = time.mktime(time.strptime(amz_date, '%Y%m%dT%H%M%SZ')) - time.timezone
        except ValueError:
            raise S3Error(403, 'AccessDenied', 'bad x-amz-date')
        if abs(t - time.time()) > 900:
            raise S3Error(403, 'RequestTimeTooSkewed', 'The difference between the '
                          'request time and the current time is too large.')
        if a.token and self.headers.get('x-amz-security-token') != a.token:
            raise S3Error(403, 'InvalidToken', 'The provided token is malformed or otherwise invalid.')
        signed = fields.get('SignedHeaders', '').split(';')
        if 'host' not in signed or 'x-amz-date' not in signed:
            raise S3Error(403, 'AccessDenied', 'host and x-amz-date must be signed')
        if a.token and 'x-amz-security-token' not in signed:
            raise S3Error(403, 'AccessDenied', 'the session token must be signed')
        ph = self.headers.get('x-amz-content-sha256')
        if ph is None:
            raise S3Error(400, 'InvalidRequest', 'Missing required header for this '
                          'request: x-amz-content-sha256')
        if ph == 'UNSIGNED-PAYLOAD':
            self.bump('bodies_unsigned')
        else:
            if ph != hashlib.sha256(body).hexdigest():
                raise S3Error(400, 'XAmzContentSHA256Mismatch', "The provided "
                              "'x-amz-content-sha256' header does not match what was computed.")
            if body:
                self.bump('bodies_signed')
        _, _, want = sigv4(self.command, path, pairs, self.headers.items(), signed, ph,
                           amz_date, cred[2], cred[3], a.secret_key)
        if not hmac.compare_digest(want, fields.get('Signature', '')):
            raise S3Error(403, 'SignatureDoesNotMatch', 'The request signature we '
                          'calculated does not match the signature you provided. '
                          'Check your key and signing method.')
        md5 = self.headers.get('Content-MD5')
        if md5 is not None:
            if base64.b64encode(hashlib.md5(body).digest()).decode() != md5:
                raise S3Error(400, 'BadDigest', 'The Content-MD5 you specified did '
                              'not match what we received.')

    def bump(self, name, n=1):
        st = self.server.state
        with st.lock:
            st.stats[name] = st.stats.get(name, 0) + n

    # -- verbs
    def do_GET(self): self.handle_any()
    def do_HEAD(self): self.handle_any()
    def do_PUT(self): self.handle_any()
    def do_POST(self): self.handle_any()
    def do_DELETE(self): self.handle_any()

    def handle_any(self):
        st = self.server.state
        head = self.command == 'HEAD'
        try:
            body = self.read_body()
        except (ConnectionError, OSError):
            self.close_connection = True
            return
        bucket, key, pairs, q, path = self.route()
        if bucket == '__ctl':
            return self.control(key, body)
        op = self.op_name(bucket, key, q)
        with st.lock:
            st.stats['requests'][op] = st.stats['requests'].get(op, 0) + 1
        fault = st.take_fault(op, q)
        if op == 'head':
            with st.lock:
                log = st.stats.setdefault('head_log', [])
                if len(log) < 100000:
                    log.append(key)
        if op == 'list':
            with st.lock:
                log = st.stats.setdefault('list_log', [])
                if len(log) < 100000:
                    log.append({'prefix': q.get('prefix', ''),
                                'max_keys': int(q.get('max-keys') or 1000),
                                'start_after': q.get('start-after'),
                                'token': 'continuation-token' in q})
        try:
            if fault and fault['kind'] == 'delay':
                time.sleep(fault.get('ms', 100) / 1000.0)
                fault = None
            if fault and fault['kind'] == 'reset':
                return self.reset()
            if fault and fault['kind'] in ('slowdown', 'throttle429', 'error500',
                                           'badsig', 'echo_token'):
                raise self.fault_error(fault)
            self.check_auth(pairs, path, body)
            if self.command == 'PUT' and op in ('put', 'part') and \
                    self.headers.get('Content-MD5') is None:
                self.bump('puts_without_md5')
            status, hs, out = self.dispatch(op, bucket, key, q, body, fault)
        except S3Error as e:
            return self.send_error_xml(e, head)
        if fault and fault['kind'] == 'truncate' and out:
            # announce the whole body, send half, cut the connection
            self.send_response(status)
            hs = dict(hs)
            hs['Content-Length'] = str(len(out))
            for k, v in hs.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(out[:len(out) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send(status, out, hs, head)

    def fault_error(self, f):
        ra = {'Retry-After': str(f.get('retry_after', 1))}
        k = f['kind']
        if k == 'slowdown':
            return S3Error(503, 'SlowDown', 'Please reduce your request rate.', ra)
        if k == 'throttle429':
            return S3Error(429, 'TooManyRequests', 'Too many requests.', ra)
        if k == 'error500':
            return S3Error(500, 'InternalError', 'We encountered an internal error. '
                           'Please try again.')
        if k == 'badsig':
            return S3Error(403, 'SignatureDoesNotMatch', 'The request signature we '
                           'calculated does not match the signature you provided.')
        # echo_token: a server that echoes what it got (the scrubbing test)
        return S3Error(400, 'InvalidArgument', 'bad request: token %s auth %s' % (
            self.headers.get('x-amz-security-token'), self.headers.get('Authorization')))

    def op_name(self, bucket, key, q):
        m = self.command
        if not key:
            if m == 'GET' and 'uploads' in q:
                return 'listuploads'
            return 'list' if m == 'GET' else 'bucket'
        if 'uploadId' in q:
            if m == 'PUT':
                return 'partcopy' if self.headers.get('x-amz-copy-source') else 'part'
            return {'GET': 'listparts', 'POST': 'complete', 'DELETE': 'abort'}.get(m, 'mp')
        if m == 'POST' and 'uploads' in q:
            return 'create'
        if m == 'PUT':
            return 'copy' if self.headers.get('x-amz-copy-source') else 'put'
        return {'GET': 'get', 'HEAD': 'head', 'DELETE': 'delete'}.get(m, 'other')

    def objects(self, bucket):
        b = self.server.state.buckets.get(bucket)
        if b is None:
            raise S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist')
        return b

    def meta_of(self):
        return {k.lower()[11:]: v for k, v in self.headers.items()
                if k.lower().startswith('x-amz-meta-')}

    def obj_headers(self, o):
        hs = {'ETag': '"%s"' % o.etag, 'Last-Modified': formatdate(o.mtime, usegmt=True),
              'Content-Type': o.content_type, 'Accept-Ranges': 'bytes'}
        if o.storage_class != 'STANDARD':
            hs['x-amz-storage-class'] = o.storage_class
        for k, v in o.meta.items():
            hs['x-amz-meta-' + k] = v
        return hs

    def copy_source(self):
        src = urllib.parse.unquote(self.headers.get('x-amz-copy-source'))
        src = src[1:] if src.startswith('/') else src
        b, _, k = src.partition('/')
        objs = self.objects(b)
        with self.server.state.lock:
            o = objs.get(k)
        if o is None:
            raise S3Error(404, 'NoSuchKey', 'The specified key does not exist.')
        return o

    def dispatch(self, op, bucket, key, q, body, fault):
        st = self.server.state
        xmlh = {'Content-Type': 'application/xml'}
        if op == 'list':
            return 200, xmlh, self.list_v2(bucket, q, fault)
        if op == 'listuploads':
            self.objects(bucket)
            with st.lock:
                ups = [('Upload', [('Key', u['key']), ('UploadId', i)])
                       for i, u in sorted(st.uploads.items()) if u['bucket'] == bucket]
            return 200, xmlh, xml_doc('ListMultipartUploadsResult',
                                      [('Bucket', bucket), ('IsTruncated', 'false')] + ups)
        objs = self.objects(bucket)
        if op in ('get', 'head'):
            with st.lock:
                o = objs.get(key)
            if o is None:
                raise S3Error(404, 'NoSuchKey', 'The specified key does not exist.')
            hs = self.obj_headers(o)
            rng = self.headers.get('Range')
            data = o.data
            status = 200
            if rng and rng.startswith('bytes='):
                a, _, b = rng[6:].partition('-')
                a = int(a)
                b = int(b) if b else len(data) - 1
                b = min(b, len(data) - 1)
                if a >= len(data) or a > b:
                    raise S3Error(416, 'InvalidRange', 'The requested range is not satisfiable')
                hs['Content-Range'] = 'bytes %d-%d/%d' % (a, b, len(data))
                data = data[a:b + 1]
                status = 206
            if op == 'head':
                hs['Content-Length'] = str(len(data))
                return status, hs, b''
            return status, hs, data
        if op == 'put':
            inm = self.headers.get('If-None-Match')
            if inm is not None:
                self.bump('conditional_puts')
                if st.conditional == 501:
                    self.bump('conditional_refused')
                    raise S3Error(501, 'NotImplemented', 'A header you provided implies '
                                  'functionality that is not implemented')
                if st.conditional == 400:
                    self.bump('conditional_refused')
                    raise S3Error(400, 'InvalidArgument', 'If-None-Match is not supported')
            o = Obj(body, self.meta_of(), self.headers.get('x-amz-storage-class', 'STANDARD'),
                    self.headers.get('Content-Type', 'binary/octet-stream'))
            with st.lock:
                if inm is not None and st.conditional == 'ok':
                    if inm.strip() != '*':
                        raise S3Error(501, 'NotImplemented', 'If-None-Match other than *')
                    if key in objs:
                        raise S3Error(412, 'PreconditionFailed', 'At least one of the '
                                      'pre-conditions you specified did not hold')
                objs[key] = o
            return 200, {'ETag': '"%s"' % o.etag}, b''
        if op == 'copy':
            src = self.copy_source()
            im = self.headers.get('x-amz-copy-source-if-match')
            if im is not None and im.strip('"') != src.etag:
                raise S3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions '
                              'you specified did not hold')
            if fault and fault['kind'] == 'error200':
                return 200, xmlh, xml_doc('Error', [('Code', 'InternalError'),
                                                    ('Message', 'copy failed midway')])
            directive = self.headers.get('x-amz-metadata-directive', 'COPY')
            meta = dict(src.meta) if directive == 'COPY' else self.meta_of()
            o = Obj(src.data, meta, self.headers.get('x-amz-storage-class', src.storage_class),
                    src.content_type if directive == 'COPY' else
                    self.headers.get('Content-Type', 'binary/octet-stream'), src.etag)
            with st.lock:
                objs[key] = o
            return 200, xmlh, xml_doc('CopyObjectResult', [('LastModified', iso(o.mtime)),
                                                           ('ETag', '"%s"' % o.etag)])
        if op == 'delete':
            with st.lock:
                objs.pop(key, None)
            return 204, {}, b''
        if op == 'create':
            uid = base64.urlsafe_b64encode(os.urandom(24)).decode()
            with st.lock:
                st.uploads[uid] = {'bucket': bucket, 'key': key, 'meta': self.meta_of(),
                                   'parts': {}, 'class': self.headers.get(
                                       'x-amz-storage-class', 'STANDARD'),
                                   'type': self.headers.get('Content-Type',
                                                            'binary/octet-stream')}
            return 200, xmlh, xml_doc('InitiateMultipartUploadResult', [
                ('Bucket', bucket), ('Key', key), ('UploadId', uid)])
        up = self.upload(bucket, key, q)
        if op in ('part', 'partcopy'):
            n = int(q.get('partNumber', '0'))
            if not 1 <= n <= 10000:
                raise S3Error(400, 'InvalidArgument', 'Part number must be an integer '
                              'between 1 and 10000, inclusive')
            if op == 'partcopy':
                src = self.copy_source()
                rng = self.headers.get('x-amz-copy-source-range', '')
                data = src.data
                if rng.startswith('bytes='):
                    a, _, b = rng[6:].partition('-')
                    data = data[int(a):int(b) + 1]
            else:
                data = body
                self.gather_parts()
            etag = hashlib.md5(data).hexdigest()
            with st.lock:
                up['parts'][n] = (data, etag)
                st.stats['parts_received'] += 1
                st.stats['parts_in_flight'] -= 1 if op == 'part' else 0
            if op == 'partcopy':
                return 200, xmlh, xml_doc('CopyPartResult', [
                    ('LastModified', iso(time.time())), ('ETag', '"%s"' % etag)])
            return 200, {'ETag': '"%s"' % etag}, b''
        if op == 'listparts':
            marker = int(q.get('part-number-marker', '0') or 0)
            page = st.args.max_parts_page
            with st.lock:
                nums = sorted(n for n in up['parts'] if n > marker)
            more = len(nums) > page
            nums = nums[:page]
            items = [('Bucket', bucket), ('Key', key), ('UploadId', q['uploadId']),
                     ('PartNumberMarker', str(marker)),
                     ('NextPartNumberMarker', str(nums[-1] if nums else marker)),
                     ('MaxParts', str(page)), ('IsTruncated', 'true' if more else 'false')]
            for n in nums:
                d, e = up['parts'][n]
                items.append(('Part', [('PartNumber', str(n)), ('LastModified', iso(time.time())),
                                       ('ETag', '"%s"' % e), ('Size', str(len(d)))]))
            return 200, xmlh, xml_doc('ListPartsResult', items)
        if op == 'abort':
            with st.lock:
                st.uploads.pop(q['uploadId'], None)
            return 204, {}, b''
        if op == 'complete':
            if fault and fault['kind'] == 'error200':
                return 200, xmlh, xml_doc('Error', [('Code', 'InternalError'),
                                                    ('Message', 'complete failed midway')])
            root = ET.fromstring(body)
            want = []
            for p in root.iter():
                if p.tag.endswith('Part'):
                    num = etag = None
                    for c in p:
                        if c.tag.endswith('PartNumber'):
                            num = int(c.text)
                        elif c.tag.endswith('ETag'):
                            etag = c.text.strip('"')
                    want.append((num, etag))
            if not want or [n for n, _ in want] != sorted({n for n, _ in want}):
                raise S3Error(400, 'InvalidPartOrder', 'The list of parts was not in ascending order.')
            datas, md5s = [], b''
            for i, (n, e) in enumerate(want):
                got = up['parts'].get(n)
                if got is None or got[1] != e:
                    raise S3Error(400, 'InvalidPart', 'One or more of the specified parts '
                                  'could not be found.')
                if i < len(want) - 1 and len(got[0]) < st.args.min_part_size:
                    raise S3Error(400, 'EntityTooSmall', 'Your proposed upload is smaller '
                                  'than the minimum allowed object size.')
                datas.append(got[0])
                md5s += bytes.fromhex(got[1])
            etag = '%s-%d' % (hashlib.md5(md5s).hexdigest(), len(want))
            o = Obj(b''.join(datas), up['meta'], up['class'], up['type'], etag)
            with st.lock:
                objs[key] = o
                st.uploads.pop(q['uploadId'], None)
            return 200, xmlh, xml_doc('CompleteMultipartUploadResult', [
                ('Bucket', bucket), ('Key', key), ('ETag', '"%s"' % etag)])
        raise S3Error(405, 'MethodNotAllowed', 'not supported here')

    def upload(self, bucket, key, q):
        st = self.server.state
        with st.lock:
            up = st.uploads.get(q.get('uploadId'))
        if up is None or up['bucket'] != bucket or up['key'] != key:
            raise S3Error(404, 'NoSuchUpload', 'The specified upload does not exist.')
        return up

    def gather_parts(self):
        """Counts the parts in flight; with a hold set, answers none until
        that many are in flight at once (or the hold times out)."""
        st = self.server.state
        with st.cond:
            st.stats['parts_in_flight'] += 1
            st.stats['max_parts_in_flight'] = max(st.stats['max_parts_in_flight'],
                                                  st.stats['parts_in_flight'])
            if st.hold and not st.hold_released:
                end = time.time() + st.hold_timeout
                while st.stats['parts_in_flight'] < st.hold and time.time() < end:
                    st.cond.wait(end - time.time())
                st.hold_released = True
                st.cond.notify_all()

    def list_v2(self, bucket, q, fault):
        st = self.server.state
        objs = self.objects(bucket)
        prefix = q.get('prefix', '')
        delim = q.get('delimiter', '')
        maxk = min(int(q.get('max-keys', '1000') or 1000), 1000)
        tok = q.get('continuation-token')
        skip_prefix = None
        # ListObjects (v1, what rclone asks of a provider "Other"): a marker
        # is where the page starts; a marker that is a common prefix (the
        # NextMarker of a page that ended on one) skips its keys
        v1 = q.get('list-type') != '2'
        if v1:
            tok = None
            start = q.get('marker', '')
            if delim and start.endswith(delim):
                skip_prefix = start
        elif tok:
            try:
                start = base64.urlsafe_b64decode(tok.encode()).decode('utf-8')
            except Exception:
                raise S3Error(400, 'InvalidArgument', 'The continuation token provided is incorrect')
            if start.startswith('P'):
                skip_prefix = start[1:]
            start = start[1:]
        else:
            start = q.get('start-after', '')
        enc = q.get('encoding-type') == 'url'
        contents, prefixes, n, last, truncated = [], [], 0, None, False
        seen_cp = None
        pb = prefix.encode('utf-8', 'surrogateescape')
        sb = start.encode('utf-8', 'surrogateescape')
        with st.lock:
            kbs, ks = objs.sorted_keys()
            # the keys under prefix are one run of the sorted keys
            i0 = max(bisect.bisect_left(kbs, pb), bisect.bisect_right(kbs, sb))
            for idx in range(i0, len(ks)):
                k = ks[idx]
                if not kbs[idx].startswith(pb):
                    break
                if skip_prefix and k.startswith(skip_prefix):
                    continue
                o = objs.get(k)
                if o is None:
                    continue
                cp = None
                if delim:
                    i = k.find(delim, len(prefix))
                    if i >= 0:
                        cp = k[:i + len(delim)]
                if cp is not None and cp == seen_cp:
                    continue
                if n == maxk:
                    truncated = True
                    break
                n += 1
                if cp is not None:
                    seen_cp = cp
                    prefixes.append(cp)
                    last = 'P' + cp
                else:
                    contents.append((k, o))
                    last = 'K' + k

        def e(s):
            return urllib.parse.quote(s, safe='/') if enc else s
        items = [('Name', bucket), ('Prefix', e(prefix)), ('KeyCount', str(n)),
                 ('MaxKeys', str(maxk)), ('IsTruncated', 'true' if truncated else 'false')]
        if delim:
            items.append(('Delimiter', e(delim)))
        if enc:
            items.append(('EncodingType', 'url'))
        if tok:
            items.append(('ContinuationToken', tok))
        if v1:
            items.append(('Marker', e(q.get('marker', ''))))
            if truncated and not (fault and fault['kind'] == 'truncated_page'):
                items.append(('NextMarker', e(last[1:])))
        elif truncated and not (fault and fault['kind'] == 'truncated_page'):
            items.append(('NextContinuationToken',
                          base64.urlsafe_b64encode(last.encode('utf-8', 'surrogateescape')).decode()))
        if fault and fault['kind'] == 'truncated_page':
            items[4] = ('IsTruncated', 'true')
        for k, o in contents:
            items.append(('Contents', [('Key', e(k)), ('LastModified', iso(o.mtime)),
                                       ('ETag', '"%s"' % o.etag), ('Size', str(len(o.data))),
                                       ('StorageClass', o.storage_class)]))
        for cp in prefixes:
            items.append(('CommonPrefixes', [('Prefix', e(cp))]))
        return xml_doc('ListBucketResult', items)

    # -- control
    def control(self, what, body):
        st = self.server.state
        if self.client_address[0] != '127.0.0.1':
            return self.send(403, b'no')
        req = json.loads(body or b'{}')
        with st.cond:
            if what == 'fault':
                req.setdefault('count', 1)
                st.faults.append(req)
            elif what == 'clear':
                st.faults = []
            elif what == 'hold':
                st.hold = int(req.get('parts', 0))
                st.hold_timeout = float(req.get('timeout', 10))
                st.hold_released = False
            elif what == 'reset_stats':
                st.stats.update({'requests': {}, 'max_parts_in_flight': 0, 'parts_received': 0,
                                 'puts_without_md5': 0, 'bodies_signed': 0,
                                 'bodies_unsigned': 0, 'list_log': [], 'head_log': [],
                                 'conditional_puts': 0, 'conditional_refused': 0})
            elif what == 'fill':
                # n objects PREFIX00000... of size bytes made here (a big
                # folder without n PUTs), with rclone's metadata if given
                objs = st.buckets.setdefault(req['bucket'], Bucket())
                for i in range(int(req['n'])):
                    data = (('%s%05d\n' % (req['prefix'], i)).encode() * 64)[:int(req.get('size', 10))]
                    objs['%s%05d' % (req['prefix'], i)] = Obj(data, dict(req.get('meta', {})),
                                                              'STANDARD', 'binary/octet-stream')
            elif what == 'bucket':
                st.buckets.setdefault(req['name'], Bucket())
            elif what == 'conditional':
                a = req.get('answer', 'ok')
                st.conditional = a if a in ('ok', 'ignore') else int(a)
            elif what == 'put':
                # an object written by someone else (no signature needed)
                objs = st.buckets.setdefault(req['bucket'], Bucket())
                objs[req['key']] = Obj(req.get('data', '').encode(), dict(req.get('meta', {})),
                                       'STANDARD', 'binary/octet-stream')
            out = json.dumps({'stats': st.stats, 'uploads': len(st.uploads),
                              'cpu_s': time.process_time(),
                              'upload_keys': sorted(u['key'] for u in st.uploads.values()),
                              'faults_left': sum(f['count'] for f in st.faults)}).encode()
        self.send(200, out, {'Content-Type': 'application/json'})


def main(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--access-key')
    ap.add_argument('--secret-key')
    ap.add_argument('--token')
    ap.add_argument('--bucket', action='append', default=[])
    ap.add_argument('--vhost-domain')
    ap.add_argument('--min-part-size', type=int, default=5 * 1024 * 1024)
    ap.add_argument('--max-parts-page', type=int, default=1000)
    ap.add_argument('--selftest', action='store_true')
    args = ap.parse_args(argv)
    if args.selftest:
        return selftest()
    if not args.access_key or not args.secret_key:
        ap.error('--access-key and --secret-key are required')
    # a listen backlog of 5 (socketserver's default) drops the SYNs of
    # clients that open dozens of connections at once: each waits 1 s
    ThreadingHTTPServer.request_queue_size = 1024
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.daemon_threads = True
    srv.state = State(args)
    print('PORT %d' % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
