/* Unit tests of the S3 answers' parser (src/adapter/s3/xml.c) fed in
 * small pieces, and of rclone's mtime text (client.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapter/s3/s3.h"
#include "treemig.h"

/* Feeds s in pieces of n bytes. */
static int feed(struct tm__s3_xml *x, const char *s, size_t n)
{
    char why[160];
    size_t len = strlen(s), off;
    int rc = 0;
    for (off = 0; off < len && !rc; off += n)
        rc = tm__s3_xml_feed(x, s + off, len - off < n ? len - off : n, 0, why,
                             sizeof(why));
    if (!rc)
        rc = tm__s3_xml_feed(x, "", 0, 1, why, sizeof(why));
    return rc;
}

static const char list_page[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<Name>b</Name><Prefix>d%2F</Prefix><KeyCount>3</KeyCount>"
    "<IsTruncated>true</IsTruncated><EncodingType>url</EncodingType>"
    "<NextContinuationToken>tok/1==</NextContinuationToken>"
    "<Contents><Key>d/a+b%0Dc</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
    "<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size>"
    "<StorageClass>STANDARD</StorageClass><Owner><ID>x</ID></Owner></Contents>"
    "<Contents><Key>d/z%E2%82%AC</Key><LastModified>2020-01-01T00:00:00.5Z</LastModified>"
    "<ETag>\"e\"</ETag><Size>0</Size></Contents>"
    "<CommonPrefixes><Prefix>d/sub%20dir/</Prefix></CommonPrefixes>"
    "</ListBucketResult>";

static void test_list_page_in_pieces(void **state)
{
    size_t piece;
    (void)state;
    for (piece = 1; piece < sizeof(list_page); piece = piece * 3 + 1) {
        struct tm__s3_page pg;
        struct tm__s3_xml *x;
        char why[160];
        assert_int_equal(tm__s3_xml_new(&x, &pg), 0);
        assert_int_equal(feed(x, list_page, piece), 0);
        assert_int_equal(tm__s3_xml_kind(x), TM_S3X_LIST);
        assert_int_equal(tm__s3_xml_page_finish(x, why, sizeof(why)), 0);
        assert_true(pg.truncated);
        assert_string_equal(pg.next_token, "tok/1==");
        assert_int_equal(pg.n_objects, 2);
        assert_int_equal(pg.objects[0].key_len, 7);
        assert_memory_equal(pg.objects[0].key, "d/a b\rc", 7);
        assert_int_equal(pg.objects[0].size, 434234);
        assert_int_equal(pg.objects[0].mtime_ns, 1255369830000000000LL);
        assert_string_equal(pg.objects[0].etag, "fba9dede5f27731c9771645a39863328");
        assert_string_equal(pg.objects[0].storage_class, "STANDARD");
        assert_string_equal(pg.objects[1].key, "d/z\xe2\x82\xac");
        assert_int_equal(pg.objects[1].mtime_ns, 1577836800500000000LL);
        assert_string_equal(pg.objects[1].etag, "e");
        assert_int_equal(pg.n_prefixes, 1);
        assert_string_equal(pg.prefixes[0], "d/sub dir/");
        /* the greatest of keys and prefixes is the cursor */
        assert_string_equal(pg.last, "d/z\xe2\x82\xac");
        tm__s3_xml_free(x);
        tm__s3_page_release(&pg);
    }
}

static void test_error_and_results(void **state)
{
    struct tm__s3_xml *x;
    const struct tm__s3_part *p;
    size_t n;
    int trunc, next;
    (void)state;
    assert_int_equal(tm__s3_xml_new(&x, NULL), 0);
    assert_int_equal(feed(x, "<Error><Code>SlowDown</Code><Message>Please &amp; slow"
                             "</Message><RequestId>1</RequestId></Error>", 5), 0);
    assert_int_equal(tm__s3_xml_kind(x), TM_S3X_ERROR);
    assert_string_equal(tm__s3_xml_code(x), "SlowDown");
    assert_string_equal(tm__s3_xml_message(x), "Please & slow");
    tm__s3_xml_free(x);

    assert_int_equal(tm__s3_xml_new(&x, NULL), 0);
    assert_int_equal(feed(x, "<InitiateMultipartUploadResult><Bucket>b</Bucket>"
                             "<UploadId>VXBsb2FkIElE</UploadId>"
                             "</InitiateMultipartUploadResult>", 4), 0);
    assert_string_equal(tm__s3_xml_upload_id(x), "VXBsb2FkIElE");
    tm__s3_xml_free(x);

    assert_int_equal(tm__s3_xml_new(&x, NULL), 0);
    assert_int_equal(feed(x, "<ListPartsResult><IsTruncated>true</IsTruncated>"
                             "<NextPartNumberMarker>2</NextPartNumberMarker>"
                             "<Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag>"
                             "<Size>5242880</Size></Part><Part><PartNumber>2"
                             "</PartNumber><ETag>\"b\"</ETag><Size>7</Size></Part>"
                             "</ListPartsResult>", 3), 0);
    p = tm__s3_xml_parts(x, &n, &trunc, &next);
    assert_int_equal(n, 2);
    assert_true(trunc);
    assert_int_equal(next, 2);
    assert_int_equal(p[0].number, 1);
    assert_int_equal(p[0].size, 5242880);
    assert_string_equal(p[1].etag, "b");
    tm__s3_xml_free(x);

    assert_int_equal(tm__s3_xml_new(&x, NULL), 0);
    assert_int_equal(feed(x, "<CopyObjectResult><LastModified>2009-10-28T22:32:00Z"
                             "</LastModified><ETag>\"9b2cf\"</ETag></CopyObjectResult>", 64), 0);
    assert_int_equal(tm__s3_xml_kind(x), TM_S3X_COPY);
    assert_string_equal(tm__s3_xml_etag(x), "9b2cf");
    tm__s3_xml_free(x);
}

static void test_refusals(void **state)
{
    struct tm__s3_xml *x;
    struct tm__s3_page pg;
    char *big;
    char why[160];
    (void)state;
    /* a cut body */
    assert_int_equal(tm__s3_xml_new(&x, &pg), 0);
    assert_int_equal(feed(x, "<ListBucketResult><Contents><Key>a</Ke", 7), TM_EIO);
    tm__s3_xml_free(x);
    tm__s3_page_release(&pg);
    /* an entity declaration (no expansion, ever) */
    assert_int_equal(tm__s3_xml_new(&x, NULL), 0);
    assert_int_equal(feed(x, "<!DOCTYPE e [<!ENTITY a \"aaaaaaaaaa\">]><Error><Code>&a;"
                             "</Code></Error>", 100), TM_EIO);
    tm__s3_xml_free(x);
    /* an element text over 64 KiB */
    big = malloc(80 * 1024);
    assert_non_null(big);
    memset(big, 'k', 80 * 1024 - 1);
    big[80 * 1024 - 1] = '\0';
    assert_int_equal(tm__s3_xml_new(&x, &pg), 0);
    assert_int_equal(tm__s3_xml_feed(x, "<ListBucketResult><Contents><Key>", 33, 0, why,
                                     sizeof(why)), 0);
    assert_int_equal(tm__s3_xml_feed(x, big, strlen(big), 0, why, sizeof(why)), TM_EIO);
    assert_non_null(strstr(why, "64 KiB"));
    tm__s3_xml_free(x);
    tm__s3_page_release(&pg);
    free(big);
    /* a key with a bad escape or a NUL */
    assert_int_equal(tm__s3_xml_new(&x, &pg), 0);
    assert_int_equal(feed(x, "<ListBucketResult><EncodingType>url</EncodingType><Contents>"
                             "<Key>a%00b</Key><Size>1</Size></Contents></ListBucketResult>",
                          9), 0);
    assert_int_equal(tm__s3_xml_page_finish(x, why, sizeof(why)), TM_EIO);
    tm__s3_xml_free(x);
    tm__s3_page_release(&pg);
}

static void test_mtime_text(void **state)
{
    char b[40];
    int64_t ns;
    (void)state;
    /* rclone's format (ncw/swift nsToFloatString): trailing zeros dropped */
    tm__s3_mtime_format(1354040105123456789LL, b, sizeof(b));
    assert_string_equal(b, "1354040105.123456789");
    tm__s3_mtime_format(1700000000500000000LL, b, sizeof(b));
    assert_string_equal(b, "1700000000.5");
    tm__s3_mtime_format(1700000000000000000LL, b, sizeof(b));
    assert_string_equal(b, "1700000000");
    tm__s3_mtime_format(1, b, sizeof(b));
    assert_string_equal(b, "0.000000001");
    tm__s3_mtime_format(-1500000000LL, b, sizeof(b));
    assert_string_equal(b, "-1.5");
    assert_int_equal(tm__s3_mtime_parse("1354040105.123456789", &ns), 0);
    assert_int_equal(ns, 1354040105123456789LL);
    assert_int_equal(tm__s3_mtime_parse("1700000000.5", &ns), 0);
    assert_int_equal(ns, 1700000000500000000LL);
    assert_int_equal(tm__s3_mtime_parse("1700000000", &ns), 0);
    assert_int_equal(ns, 1700000000000000000LL);
    assert_int_equal(tm__s3_mtime_parse("-0.5", &ns), 0);
    assert_int_equal(ns, -500000000LL);
    /* more than 9 fraction digits are cut, as rclone does */
    assert_int_equal(tm__s3_mtime_parse("1.1234567899", &ns), 0);
    assert_int_equal(ns, 1123456789LL);
    assert_int_equal(tm__s3_mtime_parse("", &ns), TM_EINVAL);
    assert_int_equal(tm__s3_mtime_parse("1.", &ns), TM_EINVAL);
    assert_int_equal(tm__s3_mtime_parse("1e9", &ns), TM_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_page_in_pieces),
        cmocka_unit_test(test_error_and_results),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_mtime_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
