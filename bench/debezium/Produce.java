// Produces the benchmark's events for the Debezium JDBC sink baseline (bench/debezium/run.sh).
//
// Run with the Java source launcher and the worker's jars on the class path:
//   java -cp '<connect-libs>/worker/*' bench/debezium/Produce.java BROKERS TOPIC N [PAYLOAD_BYTES] [KEY_SPACE]
//
// The events are the ones sluice's gateway writes (README, "The Kafka wire format"): a UUIDv7
// id, type "bench", key "key-<k>" with k uniform in [0, KEY_SPACE), ts and received_at in UTC
// with microseconds, data {"seq":<n>,"pad":"<letters and digits>"} about PAYLOAD_BYTES long
// (like crates/loadgen's payload). The record key is the event's key, partitioned by the Java
// client's murmur2 like the gateway's librdkafka murmur2_random.
//
// Only the shape differs: the Debezium JDBC sink needs a schema, so each value is Kafka
// Connect's JsonConverter envelope {"schema": {...}, "payload": {...}} with `data` as a JSON
// string. The schema names the Debezium semantic types (io.debezium.data.Uuid,
// io.debezium.time.ZonedTimestamp, io.debezium.data.Json with source column type JSONB), the
// ones Debezium's own PostgreSQL source emits for uuid/timestamptz/jsonb columns, so the sink
// binds them as cast(? as uuid), cast(? as timestamptz) and cast(? as jsonb).
//
// Progress and errors go to stderr; the exit code is 0 only when every record was acknowledged.

import java.security.SecureRandom;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Properties;
import java.util.Random;
import java.util.SplittableRandom;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class Produce {
    static final String SCHEMA = "{\"type\":\"struct\",\"name\":\"sluice.Event\",\"optional\":false,\"fields\":["
            + "{\"field\":\"id\",\"type\":\"string\",\"optional\":false,\"name\":\"io.debezium.data.Uuid\",\"version\":1},"
            + "{\"field\":\"type\",\"type\":\"string\",\"optional\":false},"
            + "{\"field\":\"key\",\"type\":\"string\",\"optional\":true},"
            + "{\"field\":\"ts\",\"type\":\"string\",\"optional\":false,\"name\":\"io.debezium.time.ZonedTimestamp\",\"version\":1},"
            + "{\"field\":\"received_at\",\"type\":\"string\",\"optional\":false,\"name\":\"io.debezium.time.ZonedTimestamp\",\"version\":1},"
            + "{\"field\":\"data\",\"type\":\"string\",\"optional\":false,\"name\":\"io.debezium.data.Json\",\"version\":1,"
            + "\"parameters\":{\"__debezium.source.column.type\":\"JSONB\"}}"
            + "]}";

    static final DateTimeFormatter RFC3339_MICROS =
            DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSSSSS'Z'").withZone(ZoneOffset.UTC);
    static final char[] ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".toCharArray();

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: Produce BROKERS TOPIC N [PAYLOAD_BYTES] [KEY_SPACE]");
            System.exit(2);
        }
        String brokers = args[0], topic = args[1];
        long n = Long.parseLong(args[2]);
        int payloadBytes = args.length > 3 ? Integer.parseInt(args[3]) : 256;
        int keySpace = args.length > 4 ? Integer.parseInt(args[4]) : 1000;
        if (n < 1 || payloadBytes < 0 || keySpace < 1) {
            System.err.println("produce: N and KEY_SPACE must be >= 1, PAYLOAD_BYTES >= 0");
            System.exit(2);
        }

        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "20");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, String.valueOf(512 * 1024));
        p.put(ProducerConfig.BUFFER_MEMORY_CONFIG, String.valueOf(128L * 1024 * 1024));
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4"); // as the gateway
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        SecureRandom seedSource = new SecureRandom();
        SplittableRandom rng = new SplittableRandom(seedSource.nextLong());
        Random idRandom = new Random(seedSource.nextLong());
        // a pool of random letters and digits; each event's pad is a slice of it
        char[] pool = new char[Math.max(payloadBytes, 1) * 4];
        for (int i = 0; i < pool.length; i++) pool[i] = ALNUM[rng.nextInt(ALNUM.length)];

        AtomicLong acked = new AtomicLong();
        AtomicReference<Exception> failure = new AtomicReference<>();
        long started = System.nanoTime();
        long lastReport = started;
        StringBuilder sb = new StringBuilder(1024 + payloadBytes * 2);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (long seq = 0; seq < n; seq++) {
                if (failure.get() != null) break;
                String id = uuidV7(idRandom).toString();
                String key = "key-" + rng.nextInt(keySpace);
                String now = RFC3339_MICROS.format(Instant.now());
                // data: {"seq":<seq>,"pad":"<pad>"} of about payloadBytes
                int fixed = "{\"seq\":,\"pad\":\"\"}".length() + Long.toString(seq).length();
                int padLen = Math.max(0, payloadBytes - fixed);
                int off = padLen >= pool.length ? 0 : rng.nextInt(pool.length - padLen + 1);
                // JSON-in-a-JSON-string: the inner quotes are escaped once
                sb.setLength(0);
                sb.append("{\"schema\":").append(SCHEMA).append(",\"payload\":{")
                        .append("\"id\":\"").append(id).append("\",")
                        .append("\"type\":\"bench\",")
                        .append("\"key\":\"").append(key).append("\",")
                        .append("\"ts\":\"").append(now).append("\",")
                        .append("\"received_at\":\"").append(now).append("\",")
                        .append("\"data\":\"{\\\"seq\\\":").append(seq).append(",\\\"pad\\\":\\\"")
                        .append(pool, off, padLen).append("\\\"}\"}}");
                producer.send(new ProducerRecord<>(topic, key, sb.toString()), (md, e) -> {
                    if (e != null) failure.compareAndSet(null, e);
                    else acked.incrementAndGet();
                });
                long t = System.nanoTime();
                if (t - lastReport > TimeUnit.SECONDS.toNanos(5)) {
                    lastReport = t;
                    System.err.printf("produce: %d/%d sent, %d acknowledged%n", seq + 1, n, acked.get());
                }
            }
            producer.flush();
        }
        double secs = (System.nanoTime() - started) / 1e9;
        if (failure.get() != null || acked.get() != n) {
            System.err.printf("produce: FAILED after %.1f s: %d of %d acknowledged: %s%n", secs, acked.get(), n,
                    failure.get());
            System.exit(1);
        }
        System.err.printf("produce: %d events acknowledged in %.1f s (%.0f/s)%n", n, secs, n / secs);
    }

    // RFC 9562 UUIDv7: 48-bit Unix milliseconds, version 7, variant 10, 74 random bits.
    static UUID uuidV7(Random random) {
        long ms = System.currentTimeMillis();
        long msb = (ms << 16) | 0x7000L | (random.nextInt() & 0x0FFFL);
        long lsb = (random.nextLong() & 0x3FFFFFFFFFFFFFFFL) | 0x8000000000000000L;
        return new UUID(msb, lsb);
    }
}
