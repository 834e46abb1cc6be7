// Tests of the C++ interface (include/detcore.hpp): RAII ownership, det::Error, the checkpoint
// scopes (an exception never publishes a half-written checkpoint), the typed metrics path, the
// searcher range, collectives, info and options. Run by ctest as cpp_test_cpp.
#include <detcore.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace fs = std::filesystem;

static int failures = 0;
static const char *current = "";

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::fprintf(stderr, "FAIL %s (%s:%d): %s\n", current, __FILE__, __LINE__, #cond);     \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

// Expect `stmt` to throw det::Error with `status` and a message containing `needle`.
#define EXPECT_DET_ERROR(stmt, want_, needle)                                                     \
    do {                                                                                           \
        bool thrown_ = false;                                                                      \
        try {                                                                                      \
            stmt;                                                                                  \
        } catch (const det::Error &e_) {                                                           \
            thrown_ = true;                                                                        \
            if (e_.status() != (want_) || std::string(e_.what()).find(needle) == std::string::npos) { \
                std::fprintf(stderr, "FAIL %s (%s:%d): %s threw %s \"%s\", expected %s with \"%s\"\n", \
                             current, __FILE__, __LINE__, #stmt, e_.status_name(), e_.what(),      \
                             det_status_name(want_), needle);                                     \
                failures++;                                                                        \
            }                                                                                      \
        }                                                                                          \
        if (!thrown_) {                                                                            \
            std::fprintf(stderr, "FAIL %s (%s:%d): %s did not throw\n", current, __FILE__, __LINE__, #stmt); \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static fs::path tmpdir(const char *tag) {
    const char *base = std::getenv("TMPDIR");
    std::string t = std::string(base && *base ? base : "/tmp") + "/detcore-cpptest-" + tag + "-XXXXXX";
    if (!mkdtemp(t.data())) {
        std::perror("mkdtemp");
        std::exit(2);
    }
    return t;
}

static det::Options options(const fs::path &dir, const char *run = "cpp") {
    return det::Options()
        .checkpoint_dir(dir / "ckpts")
        .run_dir(dir / "run")
        .run_name(run)
        .cluster_info_dir("/nonexistent/detcore-test-info");
}

static std::string slurp(const fs::path &p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

static void write_text(const fs::path &p, const std::string &s) {
    std::ofstream f(p, std::ios::binary);
    f << s;
}

// ---------------------------------------------------------------------------------------------

static void context_lifecycle() {
    fs::path dir = tmpdir("life");
    det_context *raw = nullptr;
    {
        det::Context ctx(options(dir, "life"));
        EXPECT(static_cast<bool>(ctx));
        raw = ctx.get();
        EXPECT(ctx.info().run_name() == std::optional<std::string>("life"));
        EXPECT(!ctx.info().on_cluster());
        EXPECT(ctx.info().run_dir().value() == dir / "run");
    }
    // The destructor closed it: the C handle now reports use after close.
    bool b;
    EXPECT(det_should_preempt(raw, &b) == DET_ERR_STATE);

    det::Context a(options(dir, "life"));
    det::Context moved(std::move(a));
    EXPECT(!a && moved);
    EXPECT_DET_ERROR((void)a.info(), DET_ERR_STATE, "used after close(), release() or a move");
    moved.close();
    EXPECT(!moved);
    EXPECT_DET_ERROR((void)moved.train(), DET_ERR_STATE, "used after close()");

    // release() hands the handle over; adopt() takes one back.
    det::Context c(options(dir, "life"));
    det_context *r = c.release();
    EXPECT(!c && r);
    det::Context back = det::Context::adopt(r);
    EXPECT(back.get() == r);
    back.close();
    EXPECT(det_core_close(r) == DET_ERR_STATE);
    EXPECT(det::version() == DET_VERSION_STRING);
}

// detail::Handle, the one owner every RAII type derives from, closes a handle exactly once:
// checked with a counting close function, then with real handles through the C API's view.
struct fake_handle {
    int closes = 0;
};
static det_status close_fake(fake_handle *h) {
    h->closes++;
    return DET_OK;
}
static det_status close_fake_failing(fake_handle *h) {
    h->closes++;
    return DET_ERR_IO;
}
inline constexpr char kFake[] = "fake";
using FakeOwner = det::detail::Handle<fake_handle, det::detail::Closer<fake_handle, close_fake, kFake>>;

static void handle_owner_closes_once() {
    fake_handle a, b, c, d, e;
    {
        FakeOwner o(&a);
        EXPECT(o && o.get() == &a);
    }
    EXPECT(a.closes == 1);  // destructor
    {
        FakeOwner o(&b);
        FakeOwner moved(std::move(o));  // move construction: the handle travels, nothing closes
        EXPECT(!o && moved.get() == &b && b.closes == 0);
        FakeOwner other(&c);
        other = std::move(moved);  // move assignment closes the one held before, once
        EXPECT(c.closes == 1 && b.closes == 0 && other.get() == &b && !moved);
        auto &self = other;
        other = std::move(self);  // self-move keeps it
        EXPECT(other.get() == &b && b.closes == 0);
        other.reset(&d);  // reset closes the old, owns the new
        EXPECT(b.closes == 1 && d.closes == 0);
        other.reset();
        EXPECT(d.closes == 1 && !other);
        other.reset();  // nothing held: nothing closed
        EXPECT(d.closes == 1);
        FakeOwner given(&e);
        fake_handle *raw = given.release();  // release gives it up unclosed
        EXPECT(raw == &e && !given);
    }
    EXPECT(a.closes == 1 && b.closes == 1 && c.closes == 1 && d.closes == 1 && e.closes == 0);
    {
        // A close that fails in a destructor is printed, not thrown, and not retried.
        fake_handle f;
        { det::detail::Handle<fake_handle, det::detail::Closer<fake_handle, close_fake_failing, kFake>> o(&f); }
        EXPECT(f.closes == 1);
    }

    // The real owners: reset() and move-assignment close through the C API exactly once (a second
    // close of the same handle would be DET_ERR_STATE, printed by the deleter).
    fs::path dir = tmpdir("owner");
    det_tb_writer *w1 = nullptr, *w2 = nullptr;
    {
        det::TensorboardWriter tb(dir / "tb1");
        det::TensorboardWriter other(dir / "tb2");
        w1 = tb.get();
        w2 = other.get();
        tb = std::move(other);  // w1 closed here
        EXPECT(det_tb_writer_flush(w1) == DET_ERR_STATE);
        EXPECT(det_tb_writer_flush(w2) == DET_OK && tb.get() == w2);
        tb.reset();  // w2 closed here
        EXPECT(!tb && det_tb_writer_flush(w2) == DET_ERR_STATE);
        EXPECT_DET_ERROR(tb.flush(), DET_ERR_STATE, "used after close(), release() or a move");
    }
    det::Context ctx(options(dir, "owner"));
    det_context *raw = ctx.get();
    ctx.reset();
    bool b_ = false;
    EXPECT(!ctx && det_should_preempt(raw, &b_) == DET_ERR_STATE);
    fs::remove_all(dir);
}

static void errors_carry_status_and_message() {
    fs::path dir = tmpdir("err");
    try {
        det::Context ctx(options(dir).checkpoint_storage("ftp://x"));
        EXPECT(false);
    } catch (const std::runtime_error &e) {  // det::Error is a std::runtime_error
        const auto *de = dynamic_cast<const det::Error *>(&e);
        EXPECT(de != nullptr);
        EXPECT(de && de->status() == DET_ERR_INVALID_ARGUMENT);
        EXPECT(de && std::string(de->status_name()) == "DET_ERR_INVALID_ARGUMENT");
        EXPECT(std::string(e.what()).find("det_core_init: checkpoint_storage: unknown scheme \"ftp\"") != std::string::npos);
    }
    EXPECT_DET_ERROR(det::Context(options(dir).hparams_json("[1]")), DET_ERR_INVALID_ARGUMENT,
                     "hparams_json: expected a JSON object, got array");
    EXPECT_DET_ERROR(det::Context(options(dir).preempt_signals({SIGKILL})), DET_ERR_INVALID_ARGUMENT,
                     "SIGKILL cannot be caught");
    EXPECT_DET_ERROR(det::Context(options(dir).distributed(det::DistributedConfig().rank(3).size(2))),
                     DET_ERR_INVALID_ARGUMENT, "rank 3 must be less than size 2");
    EXPECT_DET_ERROR(det::Options().run_name(std::string_view("a\0b", 3)), DET_ERR_INVALID_ARGUMENT,
                     "run_name contains a NUL byte");
    EXPECT_DET_ERROR(det::Context(options(dir).distributed(det::DistributedConfig().job_id("tab\there"))),
                     DET_ERR_INVALID_ARGUMENT, "job_id \"tab\\there\" must be 1 to 256 bytes of printable text");

    det::Context ctx(options(dir));
    EXPECT_DET_ERROR((void)ctx.checkpoint().store_path("{\"steps_completed\": 1"), DET_ERR_INVALID_ARGUMENT,
                     "metadata_json: malformed JSON");
    EXPECT_DET_ERROR((void)ctx.checkpoint().store_path("{}"), DET_ERR_INVALID_ARGUMENT, "steps_completed");
    EXPECT_DET_ERROR(ctx.train().report_metrics("a.b", 1, {{"x", 1}}), DET_ERR_INVALID_ARGUMENT, "group");
    EXPECT_DET_ERROR(ctx.train().report_training_metrics_json(1, "{\"a\": 1,}"), DET_ERR_INVALID_ARGUMENT,
                     "metrics_json: malformed JSON");
    EXPECT_DET_ERROR((void)ctx.info().hparam<double>("missing"), DET_ERR_NOT_FOUND, "hparam \"missing\" not found");
    EXPECT_DET_ERROR((void)ctx.checkpoint().restore_path("00000000-0000-0000-0000-000000000000"), DET_ERR_NOT_FOUND,
                     "det_ckpt_restore_path_begin");
    EXPECT_DET_ERROR(ctx.train().report_progress(2.0), DET_ERR_INVALID_ARGUMENT, "progress");
}

static void checkpoint_scopes() {
    fs::path dir = tmpdir("ckpt");
    std::string first;
    {
        det::Context ctx(options(dir, "scopes"));
        EXPECT(!ctx.info().latest_checkpoint());

        // The callback form publishes on return.
        first = ctx.checkpoint().store_path(det::JsonObject().add("steps_completed", 5).add("note", "first"),
                                            [&](const fs::path &p, const std::string &id) {
                                                EXPECT(p.filename() == id || p.string().find(id) != std::string::npos);
                                                write_text(p / "model.bin", "weights-5");
                                                fs::create_directories(p / "sub");
                                                write_text(p / "sub" / "opt.txt", "momentum");
                                            });
        EXPECT(first.size() == 36);
        EXPECT(fs::exists(dir / "ckpts" / first / "model.bin"));
        EXPECT(slurp(dir / "ckpts" / first / "metadata.json").find("\"note\": \"first\"") != std::string::npos);

        // An exception inside the callback: nothing is published, the folder is gone.
        fs::path half;
        struct Boom {};
        bool caught = false;
        try {
            (void)ctx.checkpoint().store_path("{\"steps_completed\": 6}", [&](const fs::path &p, const std::string &) {
                half = p;
                write_text(p / "model.bin", "half-written");
                throw Boom{};
            });
        } catch (const Boom &) {
            caught = true;
        }
        EXPECT(caught);
        EXPECT(!half.empty() && !fs::exists(half));

        // The same with the scope object, unwound by an exception.
        std::string scope_id;
        try {
            det::StorePath s = ctx.checkpoint().store_path(det::JsonObject().add("steps_completed", 7));
            scope_id = s.storage_id();
            write_text(s.path() / "model.bin", "half");
            throw std::runtime_error("disk full");
        } catch (const std::runtime_error &e) {
            EXPECT(std::string(e.what()) == "disk full");
        }
        EXPECT(!scope_id.empty() && !fs::exists(dir / "ckpts" / scope_id));

        // Explicit commit and abort; ending twice is refused.
        det::StorePath s = ctx.checkpoint().store_path("{\"steps_completed\": 8}");
        write_text(s.path() / "model.bin", "weights-8");
        std::string id8 = s.commit();
        EXPECT(!s);
        EXPECT(slurp(dir / "ckpts" / id8 / "model.bin") == "weights-8");
        EXPECT_DET_ERROR(s.commit(), DET_ERR_STATE, "already committed");
        EXPECT_DET_ERROR((void)s.path(), DET_ERR_STATE, "already committed");
        det::StorePath a = ctx.checkpoint().store_path("{\"steps_completed\": 9}");
        fs::path apath = a.path();
        a.abort();
        EXPECT(!fs::exists(apath));
        // Moving a scope moves ownership; destroying the empty one does nothing.
        det::StorePath m1 = ctx.checkpoint().store_path("{\"steps_completed\": 10}");
        det::StorePath m2(std::move(m1));
        EXPECT(!m1 && m2);
        m2.abort();

        // The typed begin: steps_completed as a number, other metadata as a JsonObject.
        std::string typed = ctx.checkpoint().store_path_steps(
            3, [&](const fs::path &p, const std::string &) { write_text(p / "model.bin", "weights-3"); },
            det::JsonObject().add("reason", "typed"));
        EXPECT(ctx.checkpoint().get_metadata(typed) == "{\"steps_completed\": 3, \"reason\": \"typed\"}");
        det::StorePath t = ctx.checkpoint().store_path_steps(4);
        EXPECT(ctx.checkpoint().get_metadata(t.commit()) == "{\"steps_completed\": 4}");
        EXPECT_DET_ERROR((void)ctx.checkpoint().store_path_steps(-1), DET_ERR_INVALID_ARGUMENT,
                         "steps_completed: must be between 0 and 2147483647, got -1");
        EXPECT_DET_ERROR((void)ctx.checkpoint().store_path_steps(1, det::JsonObject().add("steps_completed", 2)),
                         DET_ERR_INVALID_ARGUMENT, "extra_metadata_json holds \"steps_completed\"");

        // get_metadata, restore (both forms), delete.
        std::string meta = ctx.checkpoint().get_metadata(first);
        EXPECT(meta.find("\"steps_completed\": 5") != std::string::npos);
        std::string content = ctx.checkpoint().restore_path(first, [](const fs::path &p) { return slurp(p / "model.bin"); });
        EXPECT(content == "weights-5");
        {
            det::RestorePath r = ctx.checkpoint().restore_path(id8);
            EXPECT(slurp(r.path() / "model.bin") == "weights-8");
            EXPECT(r.storage_id() == id8);
            EXPECT(fs::exists(dir / "ckpts" / id8 / ".detcore-manifest.json"));
            r.end();
            EXPECT_DET_ERROR((void)r.storage_id(), DET_ERR_STATE, "already ended");
            EXPECT(!r);
            EXPECT_DET_ERROR(r.end(), DET_ERR_STATE, "already ended");
        }
        ctx.checkpoint().delete_checkpoint(id8);
        EXPECT(!fs::exists(dir / "ckpts" / id8));
    }
    // A new context of the same run resumes from the only published checkpoint left.
    det::Context again(options(dir, "scopes"));
    EXPECT(again.info().latest_checkpoint() == std::optional<std::string>(first));
    EXPECT(again.info().steps_completed() == 5);
}

static void selectors() {
    fs::path dir = tmpdir("sel");
    det::Context ctx(options(dir, "sel"));
    fs::path src = dir / "src";
    fs::create_directories(src / "keep");
    write_text(src / "keep" / "a.txt", "a");
    write_text(src / "drop.txt", "d");
    std::vector<std::string> seen;
    std::string id = ctx.checkpoint().upload(src, "{\"steps_completed\": 1}", false, [&](std::string_view p) {
        seen.emplace_back(p);
        return p.rfind("keep", 0) == 0;
    });
    EXPECT(!seen.empty());
    EXPECT(fs::exists(dir / "ckpts" / id / "keep" / "a.txt"));
    EXPECT(!fs::exists(dir / "ckpts" / id / "drop.txt"));

    ctx.checkpoint().download(id, dir / "dl", det::DownloadMode::NoSharedDownload);
    EXPECT(slurp(dir / "dl" / "keep" / "a.txt") == "a");

    // A selector that throws: the exception comes out of the call, unchanged.
    struct SelectorFailed {
        int n;
    };
    int calls = 0;
    bool caught = false;
    try {
        ctx.checkpoint().download(id, dir / "dl2", det::DownloadMode::NoSharedDownload, [&](std::string_view) -> bool {
            calls++;
            throw SelectorFailed{42};
        });
    } catch (const SelectorFailed &e) {
        caught = e.n == 42;
    }
    EXPECT(caught);
    EXPECT(calls == 1);  // no further callbacks after the first exception
}

static void metrics() {
    fs::path dir = tmpdir("metrics");
    det::Context ctx(options(dir, "metrics"));
    auto train = ctx.train();
    train.report_training_metrics(10, {{"loss", 0.5}, {"accuracy", 0.75}});
    det::Metrics m{{"loss", 0.25}};
    m.set("accuracy", 0.875).set("loss", 0.125);
    EXPECT(m.size() == 2 && m.get("loss") == 0.125);
    det::Metrics copy = m;  // copies keep their own name pointers
    m.set("extra", 1);
    train.report_training_metrics(20, copy);
    train.report_validation_metrics(20, std::map<std::string, double>{{"validation_loss", 0.3}});
    train.report_metrics("custom", 20, {{"lr", 1e-3}});
    train.report_training_metrics_json(30, "{\"loss\": 0.1, \"name\": \"x\"}", "[{\"loss\": 0.1}]");
    train.set_status("testing");
    train.report_progress(0.5);
    EXPECT(!train.get_experiment_best_validation());
    std::string md = train.set_metadata("{\"a\": 1}");
    EXPECT(md.find("\"a\": 1") != std::string::npos);
    EXPECT(train.get_metadata() == md);
    train.flush(30);
    std::string lines = slurp(dir / "run" / "metrics.jsonl");
    EXPECT(lines.find("\"steps_completed\": 10") != std::string::npos);
    EXPECT(lines.find("\"metrics\": {\"loss\": 0.5, \"accuracy\": 0.75}") != std::string::npos);
    EXPECT(lines.find("\"metrics\": {\"loss\": 0.125, \"accuracy\": 0.875}") != std::string::npos);
    EXPECT(lines.find("\"group\": \"validation\"") != std::string::npos);
    EXPECT(lines.find("\"group\": \"custom\"") != std::string::npos);
    EXPECT(lines.find("\"name\": \"x\"") != std::string::npos);
    EXPECT(lines.find("extra") == std::string::npos);
}

static void json_object() {
    std::string s = det::JsonObject()
                        .add("i", 3)
                        .add("big", int64_t(1) << 40)
                        .add("f", 0.1)
                        .add("one", 1.0)
                        .add("s", "q\"b\\\n")
                        .add("b", true)
                        .add("nan", std::nan(""))
                        .add("inf", -HUGE_VAL)
                        .add("o", det::JsonObject().add("x", 1))
                        .add_raw("arr", "[1, 2]")
                        .str();
    EXPECT(s == "{\"i\": 3, \"big\": 1099511627776, \"f\": 0.1, \"one\": 1.0, \"s\": \"q\\\"b\\\\\\n\", \"b\": true, "
                "\"nan\": NaN, \"inf\": -Infinity, \"o\": {\"x\": 1}, \"arr\": [1, 2]}");
    EXPECT(det::JsonObject().str() == "{}");
    EXPECT(det::JsonObject().add("third", 1.0 / 3).str() == "{\"third\": 0.3333333333333333}");
}

static void searcher() {
    fs::path dir = tmpdir("searcher");
    {
        det::Context ctx(options(dir, "searcher").searcher_max_length(25));
        EXPECT(ctx.searcher().get_configured_units() == det::Unit::Epochs);
        int n = 0;
        for (det::SearcherOp &op : ctx.searcher().operations()) {
            EXPECT(op.length() == 25);
            op.report_progress(10);
            op.report_completed(0.5);
            n++;
        }
        EXPECT(n == 1);
        ctx.searcher().acknowledge_out_of_ops();
    }
    {
        // Not completing an operation is refused when asking for the next one.
        det::Context ctx(options(dir, "searcher2"));
        auto op = ctx.searcher().next_op();
        EXPECT(op.has_value() && op->length() == 1);
        EXPECT_DET_ERROR((void)ctx.searcher().next_op(), DET_ERR_STATE, "report_completed");
        op->report_completed_json("{\"loss\": 1}");
        EXPECT_DET_ERROR(op->report_completed(1.0), DET_ERR_STATE, "once");
        EXPECT(!ctx.searcher().next_op().has_value());
    }
}

static void distributed() {
    fs::path dir = tmpdir("dist");
    det::Context ctx(options(dir, "dist").distributed(det::DistributedConfig().job_id("cpp-job")).slurm_requeue(false));
    auto d = ctx.distributed();
    EXPECT(d.rank() == 0 && d.size() == 1 && d.local_rank() == 0 && d.local_size() == 1 && d.cross_rank() == 0 &&
           d.cross_size() == 1);
    EXPECT(d.allgather("abc") == std::vector<std::string>{"abc"});
    EXPECT(d.allgather(std::string_view("a\0b", 3)) == std::vector<std::string>{std::string("a\0b", 3)});
    EXPECT(d.gather("x").value() == std::vector<std::string>{"x"});
    EXPECT(d.broadcast("hello") == "hello");
    EXPECT(d.broadcast_local("") == "");
    EXPECT(d.allgather_local("q").size() == 1 && d.gather_local("q").has_value());
    struct Pt {
        int x;
        double y;
    };
    auto pts = d.allgather_value(Pt{3, 2.5});
    EXPECT(pts.size() == 1 && pts[0].x == 3 && pts[0].y == 2.5);
    EXPECT(d.broadcast_value(int64_t(77)) == 77);
    d.barrier();

    // Launcher environments.
    setenv("SLURM_PROCID", "1", 1);
    setenv("SLURM_NTASKS", "2", 1);
    setenv("SLURM_LOCALID", "1", 1);
    setenv("SLURM_NODEID", "0", 1);
    setenv("SLURM_NNODES", "1", 1);
    setenv("SLURM_JOB_ID", "81", 1);
    setenv("SLURM_STEP_ID", "0", 1);
    det::DistributedConfig c = det::DistributedConfig::from_env(det::Launcher::Slurm);
    EXPECT(c.rank() == 1 && c.size() == 2 && c.local_size() == 2 && c.cross_size() == 1);
    EXPECT(c.job_id() == "slurm:81.0");
    EXPECT(c.job_id("mine").c_config().job_id == std::string("mine"));
    unsetenv("SLURM_STEP_ID");  // the batch script of a 2-task job: refused, pointing at srun
    EXPECT_DET_ERROR(det::DistributedConfig::from_env(det::Launcher::Slurm), DET_ERR_INVALID_ARGUMENT,
                     "no SLURM_STEP_ID");
    unsetenv("SLURM_NTASKS");
    EXPECT_DET_ERROR(det::DistributedConfig::from_env(det::Launcher::Slurm), DET_ERR_INVALID_ARGUMENT, "SLURM_NTASKS");
    for (const char *v : {"SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NNODES", "SLURM_JOB_ID"}) unsetenv(v);
}

static void info_and_hparams() {
    fs::path dir = tmpdir("info");
    det::Context ctx(options(dir, "info").hparams_json(
        det::JsonObject().add("lr", 0.5).add("n", 4).add("name", "mlp").add("big", 300).add_raw("opt", "{\"m\": 0.9}").str()));
    auto info = ctx.info();
    EXPECT(info.hparam<double>("lr") == 0.5);
    EXPECT(info.hparam<float>("lr") == 0.5f);
    EXPECT(info.hparam<int>("n") == 4);
    EXPECT(info.hparam<int64_t>("n") == 4);
    EXPECT(info.hparam<std::string>("name") == "mlp");
    EXPECT(info.hparam<double>("opt.m") == 0.9);
    EXPECT(info.hparam("missing", 7) == 7);
    EXPECT(info.hparam("missing", 1.5) == 1.5);
    EXPECT(info.hparam("missing", "dflt") == "dflt");
    EXPECT(info.hparam("name", "dflt") == "mlp");
    EXPECT_DET_ERROR((void)info.hparam<int8_t>("big"), DET_ERR_INVALID_ARGUMENT, "out of range");
    EXPECT_DET_ERROR((void)info.hparam<int>("lr"), DET_ERR_INVALID_ARGUMENT, "not an integer");
    EXPECT_DET_ERROR((void)info.hparam("lr", 3), DET_ERR_INVALID_ARGUMENT, "not an integer");
    EXPECT_DET_ERROR((void)info.hparam("name", 2.5), DET_ERR_INVALID_ARGUMENT, "not a number");
    EXPECT_DET_ERROR((void)info.hparam("n", "dflt"), DET_ERR_INVALID_ARGUMENT, "not a string");
    EXPECT(info.hparam<int8_t>("missing", int8_t{-3}) == -3);
    EXPECT(info.hparams_json().find("\"name\": \"mlp\"") != std::string::npos);
    EXPECT(info.steps_completed() == 0);
}

static void preemption() {
    fs::path dir = tmpdir("preempt");
    fs::path halt = dir / "halt";
    det::Context ctx(options(dir, "preempt").halt_file(halt).preempt_signals({SIGUSR2}));
    EXPECT(!ctx.preempt().should_preempt());
    EXPECT(!ctx.preempt().seconds_remaining().has_value() || *ctx.preempt().seconds_remaining() > 0);
    std::raise(SIGUSR2);  // handled by detcore: a preemption request, not a crash
    EXPECT(ctx.preempt().should_preempt(false));
    EXPECT(ctx.preempt().should_preempt());
    ctx.preempt().acknowledge_preemption_signal();
}

static size_t count_event_files(const fs::path &dir) {
    size_t n = 0;
    if (!fs::exists(dir)) return 0;
    for (const auto &e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file() && e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) n++;
    return n;
}

static std::string all_event_bytes(const fs::path &dir) {
    std::string all;
    for (const auto &e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) all += slurp(e.path());
    return all;
}

static void tensorboard_writer() {
    fs::path dir = tmpdir("tbw");
    det::Context ctx(options(dir, "tbw"));
    fs::path tbdir = ctx.train().get_tensorboard_path();
    EXPECT(tbdir == dir / "run" / "tensorboard");
    EXPECT(fs::is_directory(tbdir));
    fs::path mine = tbdir / "mine";
    {
        det::TensorboardWriter tb(mine);
        EXPECT(static_cast<bool>(tb));
        tb.add_scalar("train/lr", 1, 0.25);
        tb.add_scalar("train/lr", 2, std::nan(""));
        tb.add_histogram("weights", 2, std::vector<double>{0.0, 1.0, 1.0, 2.5, -3.0});
        tb.add_histogram("bias", 2, {0.5, 0.75});
        const double raw[] = {4.0, 5.0};
        tb.add_histogram("raw", 3, raw, 2);
        tb.add_histogram("empty", 3, nullptr, 0);
        tb.flush();
        EXPECT(count_event_files(mine) == 1);
        std::string bytes = all_event_bytes(mine);
        for (const char *tag : {"train/lr", "weights", "bias", "raw", "empty"})
            EXPECT(bytes.find(tag) != std::string::npos);
        // Move-only ownership: the moved-to writer keeps writing, the moved-from one refuses.
        det::TensorboardWriter moved(std::move(tb));
        EXPECT(!tb && moved);
        EXPECT_DET_ERROR(tb.add_scalar("x", 1, 1.0), DET_ERR_STATE, "used after close(), release() or a move");
        moved.add_scalar("after_move", 4, 1.0);
        moved.close();
        EXPECT(!moved);
        EXPECT(all_event_bytes(mine).find("after_move") != std::string::npos);
        EXPECT_DET_ERROR(moved.close(), DET_ERR_STATE, "used after close()");
        EXPECT_DET_ERROR(moved.flush(), DET_ERR_STATE, "used after close()");
    }
    // The destructor closes (and so writes) what was added.
    {
        det::TensorboardWriter tb(tbdir / "dtor");
        tb.add_scalar("only_in_destructor", 1, 2.0);
    }
    EXPECT(all_event_bytes(tbdir / "dtor").find("only_in_destructor") != std::string::npos);
    // release()/adopt(): the C handle changes owner; the C API sees it closed afterwards.
    det_tb_writer *raw = nullptr;
    {
        det::TensorboardWriter tb(tbdir / "adopt");
        raw = tb.release();
        EXPECT(!tb && raw);
        det::TensorboardWriter back = det::TensorboardWriter::adopt(raw);
        back.add_scalar("adopted", 1, 1.0);
    }
    EXPECT(det_tb_writer_add_scalar(raw, "x", 1, 1.0) == DET_ERR_STATE);
    EXPECT(det_tb_writer_close(raw) == DET_ERR_STATE);
    // Bad arguments.
    EXPECT_DET_ERROR(det::TensorboardWriter(""), DET_ERR_INVALID_ARGUMENT, "dir is empty");
    EXPECT_DET_ERROR(det::TensorboardWriter(std::string("a\0b", 3)), DET_ERR_INVALID_ARGUMENT, "dir contains a NUL byte");
    det::TensorboardWriter tb(tbdir / "bad");
    EXPECT_DET_ERROR(tb.add_scalar(std::string_view("a\0b", 3), 1, 1.0), DET_ERR_INVALID_ARGUMENT,
                     "tag contains a NUL byte");
    EXPECT_DET_ERROR(tb.add_histogram("h", 1, nullptr, 3), DET_ERR_INVALID_ARGUMENT, "values is NULL");
    tb.close();
    // A writer whose folder cannot be created reports the failure when it writes.
    write_text(dir / "file", "x");
    det::TensorboardWriter blocked(dir / "file" / "sub");
    blocked.add_scalar("x", 1, 1.0);
    bool threw = false;
    try {
        blocked.close();
    } catch (const det::Error &e) {
        threw = e.status() == DET_ERR_IO;
        if (!threw) std::fprintf(stderr, "close of a blocked writer: %s %s\n", e.status_name(), e.what());
    }
    EXPECT(threw);
    EXPECT(!blocked);
}

static void tensorboard_upload() {
    fs::path dir = tmpdir("tbup");
    {
        // AUTO mode (the default) uploads by itself: the manual call is refused.
        det::Context ctx(options(dir, "tbauto"));
        EXPECT_DET_ERROR(ctx.train().upload_tensorboard_files(), DET_ERR_STATE, "can only be used in MANUAL mode");
        EXPECT_DET_ERROR(ctx.train().flush_tensorboard(-1), DET_ERR_INVALID_ARGUMENT, "timeout_seconds");
    }
    det::Context ctx(options(dir, "tbman").tensorboard_mode(det::TensorboardMode::Manual));
    fs::path tbdir = ctx.train().get_tensorboard_path();
    fs::create_directories(tbdir / "sub");
    write_text(tbdir / "sub" / "a.txt", "a");
    write_text(tbdir / "b.txt", "b");
    write_text(tbdir / "skip.log", "s");
    const fs::path synced = dir / "ckpts" / "local" / "tensorboard" / "experiment" / "runs" / "trial" / "tbman";

    // A mangler that throws: nothing is queued, the exception comes out unchanged.
    struct ManglerFailed {
        int n;
    };
    bool caught = false;
    try {
        ctx.train().upload_tensorboard_files({}, [](std::string_view, int32_t) -> std::string { throw ManglerFailed{7}; });
    } catch (const ManglerFailed &e) {
        caught = e.n == 7;
    }
    EXPECT(caught);
    // A name too long for DET_TB_NAME_MAX, one with a NUL, one that climbs out: refused.
    EXPECT_DET_ERROR(ctx.train().upload_tensorboard_files(
                         {}, [](std::string_view, int32_t) { return std::string(DET_TB_NAME_MAX, 'x'); }),
                     DET_ERR_INVALID_ARGUMENT, "DET_TB_NAME_MAX");
    EXPECT_DET_ERROR(ctx.train().upload_tensorboard_files(
                         {}, [](std::string_view, int32_t) { return std::string("a\0b", 3); }),
                     DET_ERR_INVALID_ARGUMENT, "contains a NUL byte");
    EXPECT_DET_ERROR(ctx.train().upload_tensorboard_files({}, [](std::string_view, int32_t) { return std::string("../up"); }),
                     DET_ERR_INVALID_ARGUMENT, "mangler");
    ctx.train().flush_tensorboard(30);
    EXPECT(!fs::exists(synced));

    // Selector and mangler: names relative to the folder, renamed per rank.
    std::vector<std::string> seen;
    ctx.train().upload_tensorboard_files(
        [&](std::string_view p) {
            seen.emplace_back(p);
            return p.size() < 4 || p.substr(p.size() - 4) != ".log";
        },
        [](std::string_view p, int32_t rank) { return "rank" + std::to_string(rank) + "/" + std::string(p); });
    ctx.train().flush_tensorboard(30);
    std::sort(seen.begin(), seen.end());
    EXPECT((seen == std::vector<std::string>{"b.txt", "skip.log", "sub/a.txt"}));
    EXPECT(slurp(synced / "rank0" / "sub" / "a.txt") == "a");
    EXPECT(slurp(synced / "rank0" / "b.txt") == "b");
    EXPECT(!fs::exists(synced / "rank0" / "skip.log"));
    // No callbacks: every file under its own name.
    ctx.train().upload_tensorboard_files();
    ctx.train().flush_tensorboard(30);
    EXPECT(slurp(synced / "skip.log") == "s");
    // A selector that throws: the exception comes out; no later file is selected.
    int calls = 0;
    bool sel_caught = false;
    try {
        ctx.train().upload_tensorboard_files([&](std::string_view) -> bool {
            calls++;
            throw std::logic_error("selector failed");
        });
    } catch (const std::logic_error &e) {
        sel_caught = std::string(e.what()) == "selector failed";
    }
    EXPECT(sel_caught && calls == 1);
    ctx.close();
}

static void profiler() {
    fs::path dir = tmpdir("prof");
    det::Context ctx(options(dir, "prof"));
    auto prof = ctx.profiler();
    EXPECT_DET_ERROR(prof.on(0.05), DET_ERR_INVALID_ARGUMENT, "Sampling interval must be > 0.1, got 0.05.");
    EXPECT_DET_ERROR(prof.on(1, 0), DET_ERR_INVALID_ARGUMENT, "It must be an int > 1");
    prof.on(0.1, 2);
    prof.on(0.05, 0);  // idempotent while on: arguments are not checked again (as Python)
    usleep(500 * 1000);
    prof.off();
    prof.off();  // idempotent
    ctx.train().flush(30);
    std::string lines = slurp(dir / "run" / "metrics.jsonl");
    EXPECT(lines.find("\"group\": \"cpu\"") != std::string::npos);
    EXPECT(lines.find("\"group\": \"memory\"") != std::string::npos);
    det_context *raw = ctx.get();
    ctx.close();
    EXPECT(det_profiler_on(raw, 1, 10) == DET_ERR_STATE);
    EXPECT(det_profiler_off(raw) == DET_ERR_STATE);
}

static void upload_modes() {
    fs::path dir = tmpdir("modes");
    det::Context ctx(options(dir, "modes"));
    std::string sync_id = ctx.checkpoint().store_path(
        "{\"steps_completed\": 1}", [](const fs::path &p, const std::string &) { write_text(p / "m", "1"); }, false,
        det::UploadMode::Sync);
    EXPECT(slurp(dir / "ckpts" / sync_id / "m") == "1");
    det::StorePath s = ctx.checkpoint().store_path("{\"steps_completed\": 2}");
    write_text(s.path() / "m", "2");
    std::string async_id = s.commit(det::UploadMode::Async);
    EXPECT(!s && async_id.size() == 36);
    ctx.checkpoint().wait();
    EXPECT(slurp(dir / "ckpts" / async_id / "m") == "2");
    EXPECT(ctx.checkpoint().get_metadata(async_id).find("\"steps_completed\": 2") != std::string::npos);
    // An unknown mode is refused by detcore and leaves the scope open: commit again, or abort.
    det::StorePath bad = ctx.checkpoint().store_path("{\"steps_completed\": 3}");
    write_text(bad.path() / "m", "3");
    EXPECT_DET_ERROR((void)bad.commit(static_cast<det::UploadMode>(9)), DET_ERR_INVALID_ARGUMENT,
                     "upload_mode: unknown value 9");
    EXPECT(static_cast<bool>(bad));
    std::string id3 = bad.commit(det::UploadMode::Default);
    EXPECT(!bad && slurp(dir / "ckpts" / id3 / "m") == "3");
    EXPECT_DET_ERROR((void)bad.commit(det::UploadMode::Sync), DET_ERR_STATE, "already committed");
}

static void alert_and_cluster_info() {
    fs::path dir = tmpdir("oninfo");
    det::Context ctx(options(dir, "oninfo"));
    // Off-cluster an alert is logged and succeeds (Python raises ValueError there).
    ctx.alert("title", "description");
    ctx.alert("", "", det::AlertLevel::Debug);
    ctx.alert("t", "d", det::AlertLevel::Warn);
    ctx.alert("t", "d", det::AlertLevel::Error);
    EXPECT_DET_ERROR(ctx.alert("t", "d", static_cast<det::AlertLevel>(9)), DET_ERR_INVALID_ARGUMENT,
                     "level: unknown value 9");
    EXPECT_DET_ERROR(ctx.alert(std::string_view("a\0b", 3)), DET_ERR_INVALID_ARGUMENT, "title contains a NUL byte");
    // What only a cluster knows: std::nullopt and empty lists off-cluster.
    auto info = ctx.info();
    EXPECT(!info.trial_id() && !info.experiment_id() && !info.trial_seed() && !info.trial_run_id());
    EXPECT(!info.experiment_config_json() && !info.user_data_json());
    EXPECT(!info.task_type() && !info.task_id() && !info.allocation_id() && !info.cluster_id());
    EXPECT(!info.agent_id() && !info.master_url() && !info.container_rank());
    EXPECT(info.container_addrs().empty() && info.container_slot_counts().empty());
    EXPECT(info.slot_ids().empty() && info.gpu_uuids().empty());
    EXPECT(!info.trial_debug() && !info.inter_node_network_interface());
    EXPECT(!det::cluster_info_json(dir / "no-info"));
    // Off-cluster there is nothing to link a checkpoint to: logged, no error.
    ctx.experimental().report_task_using_checkpoint("6f1c0f43-5d6c-4c79-9d5e-1f8f3f8a9b10");
    ctx.experimental().report_task_using_model_version("6f1c0f43-5d6c-4c79-9d5e-1f8f3f8a9b10", 1, 2);
    EXPECT_DET_ERROR(ctx.experimental().report_task_using_checkpoint(""), DET_ERR_INVALID_ARGUMENT,
                     "checkpoint uuid is empty");
    EXPECT_DET_ERROR(ctx.experimental().report_task_using_checkpoint(std::string_view("a\0b", 3)),
                     DET_ERR_INVALID_ARGUMENT, "checkpoint_uuid contains a NUL byte");
    // Only "unknown here" becomes std::nullopt: a closed context still throws.
    ctx.close();
    EXPECT_DET_ERROR((void)info.trial_id(), DET_ERR_STATE, "closed by det_core_close");
    EXPECT_DET_ERROR((void)info.container_addrs(), DET_ERR_STATE, "closed by det_core_close");
    EXPECT_DET_ERROR(ctx.alert("t"), DET_ERR_STATE, "used after close()");
    EXPECT_DET_ERROR((void)ctx.experimental(), DET_ERR_STATE, "used after close()");
    EXPECT_DET_ERROR((void)info.trial_debug(), DET_ERR_STATE, "closed by det_core_close");
    // The Determined launcher reads the info folder, which off-cluster does not exist.
    setenv("DET_CLUSTER_INFO_DIR", (dir / "no-info").c_str(), 1);
    bool threw = false;
    try {
        (void)det::DistributedConfig::from_env(det::Launcher::Determined);
    } catch (const det::Error &e) {
        threw = std::string(e.what()).find("no-info") != std::string::npos;
        if (!threw) std::fprintf(stderr, "from_env(Determined): %s %s\n", e.status_name(), e.what());
    }
    EXPECT(threw);
    unsetenv("DET_CLUSTER_INFO_DIR");
}

int main() {
    det::set_log_level(det::LogLevel::Warning);
    struct {
        const char *name;
        void (*fn)();
    } tests[] = {
        {"handle_owner_closes_once", handle_owner_closes_once},
        {"context_lifecycle", context_lifecycle},
        {"errors_carry_status_and_message", errors_carry_status_and_message},
        {"checkpoint_scopes", checkpoint_scopes},
        {"selectors", selectors},
        {"metrics", metrics},
        {"json_object", json_object},
        {"searcher", searcher},
        {"distributed", distributed},
        {"info_and_hparams", info_and_hparams},
        {"preemption", preemption},
        {"tensorboard_writer", tensorboard_writer},
        {"tensorboard_upload", tensorboard_upload},
        {"profiler", profiler},
        {"upload_modes", upload_modes},
        {"alert_and_cluster_info", alert_and_cluster_info},
    };
    for (const auto &t : tests) {
        current = t.name;
        int before = failures;
        try {
            t.fn();
        } catch (const std::exception &e) {
            std::fprintf(stderr, "FAIL %s: unexpected exception: %s\n", t.name, e.what());
            failures++;
        }
        std::fprintf(stderr, "%s %s\n", failures == before ? "ok  " : "FAIL", t.name);
    }
    if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
