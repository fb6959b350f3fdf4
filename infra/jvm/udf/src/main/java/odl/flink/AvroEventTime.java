package odl.flink;

import java.util.HashMap;
import java.util.Map;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code ODL_EVENT_TIME_MS(value, spec)}: the {@code event_time_ms} field of an Avro single-object
 * encoded event (0xC3 0x01, 8-byte fingerprint, body), read in place without decoding the record,
 * so that a Kafka table's {@code WATERMARK FOR} (pushed into the source: per-partition watermarks)
 * can use it. {@code spec} says, per writer fingerprint, how to skip the fields before it:
 * {@code "fingerprintHex:tokens,..."}, a token being s (string/bytes), v (int/long/enum), b, f, d,
 * n (null), M&lt;token&gt; (map), A&lt;token&gt; (array) or U&lt;n&gt;&lt;n tokens&gt; (union).
 * Returns NULL for anything else (unknown fingerprint, truncated body): the record then does not
 * move the watermark, and the job's decoder sends it to the dead letter.
 */
public class AvroEventTime extends ScalarFunction {
    private transient String parsedSpec;
    private transient Map<Long, String> skips;

    public Long eval(byte[] value, String spec) {
        if (value == null || spec == null || value.length < 10 || (value[0] & 0xff) != 0xC3 || value[1] != 0x01) {
            return null;
        }
        if (!spec.equals(parsedSpec)) {
            skips = parse(spec);
            parsedSpec = spec;
        }
        String tokens = skips.get(fingerprint(value, 2));
        if (tokens == null) {
            return null;
        }
        try {
            Body body = new Body(value, 10);
            int at = 0;
            while (at < tokens.length()) {
                at = body.skip(tokens, at);
            }
            return body.readLong();
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static long fingerprint(byte[] bytes, int from) {
        long fp = 0;
        for (int i = from + 7; i >= from; i--) {
            fp = (fp << 8) | (bytes[i] & 0xff);
        }
        return fp;
    }

    private static Map<Long, String> parse(String spec) {
        Map<Long, String> out = new HashMap<>();
        for (String entry : spec.split(",")) {
            int colon = entry.indexOf(':');
            if (colon != 16) {
                continue;
            }
            byte[] fp = new byte[8];
            for (int i = 0; i < 8; i++) {
                fp[i] = (byte) Integer.parseInt(entry.substring(2 * i, 2 * i + 2), 16);
            }
            out.put(fingerprint(fp, 0), entry.substring(colon + 1));
        }
        return out;
    }

    /** End (exclusive) of the token starting at {@code i}. */
    private static int tokenEnd(String t, int i) {
        char c = t.charAt(i);
        if (c == 'M' || c == 'A') {
            return tokenEnd(t, i + 1);
        }
        if (c == 'U') {
            int n = t.charAt(i + 1) - '0';
            int at = i + 2;
            for (int k = 0; k < n; k++) {
                at = tokenEnd(t, at);
            }
            return at;
        }
        return i + 1;
    }

    /** A read position in an Avro binary body. */
    private static final class Body {
        private final byte[] data;
        private int pos;

        Body(byte[] data, int pos) {
            this.data = data;
            this.pos = pos;
        }

        long readLong() {
            long raw = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                int b = data[pos++] & 0xff;
                raw |= (long) (b & 0x7f) << shift;
                if ((b & 0x80) == 0) {
                    return (raw >>> 1) ^ -(raw & 1);
                }
            }
            throw new IllegalArgumentException("varint too long");
        }

        private void advance(long n) {
            if (n < 0 || pos + n > data.length) {
                throw new IllegalArgumentException("truncated");
            }
            pos += (int) n;
        }

        /** Skips the value of the token at {@code i}; returns the next token's index. */
        int skip(String t, int i) {
            char c = t.charAt(i);
            switch (c) {
                case 's': advance(readLong()); return i + 1;
                case 'v': readLong(); return i + 1;
                case 'b': advance(1); return i + 1;
                case 'f': advance(4); return i + 1;
                case 'd': advance(8); return i + 1;
                case 'n': return i + 1;
                case 'M':
                case 'A':
                    for (long count = readLong(); count != 0; count = readLong()) {
                        if (count < 0) {
                            count = -count;
                            readLong();  // block size in bytes
                        }
                        for (long k = 0; k < count; k++) {
                            if (c == 'M') {
                                advance(readLong());
                            }
                            skip(t, i + 1);
                        }
                    }
                    return tokenEnd(t, i);
                case 'U': {
                    int n = t.charAt(i + 1) - '0';
                    long branch = readLong();
                    if (branch < 0 || branch >= n) {
                        throw new IllegalArgumentException("bad union branch");
                    }
                    int at = i + 2;
                    for (int k = 0; k < branch; k++) {
                        at = tokenEnd(t, at);
                    }
                    skip(t, at);
                    return tokenEnd(t, i);
                }
                default:
                    throw new IllegalArgumentException("bad spec token " + c);
            }
        }
    }
}
