/*
 * detcore.hpp — header-only C++17 interface to detcore (the Determined AI Core API), over the C
 * ABI in detcore.h. Namespace `det`.
 *
 *   det::Context ctx(det::Options().checkpoint_storage("/data/ckpts"));
 *   auto latest = ctx.info().latest_checkpoint();          // std::optional<std::string>
 *   ctx.train().report_training_metrics(step, {{"loss", loss}, {"accuracy", acc}});
 *   std::string id = ctx.checkpoint().store_path_steps(
 *       step, [&](const std::filesystem::path& dir, const std::string& storage_id) { save(dir); });
 *   if (ctx.preempt().should_preempt()) { ... }
 *
 * Rules of this header:
 *  - Every failure throws det::Error (a std::runtime_error) carrying the det_status and detcore's
 *    message. Nothing here returns a status code.
 *  - Handles are owned by move-only RAII types whose destructors end or free them: Context
 *    (det_core_close), StorePath (det_ckpt_store_path_abort unless commit() ran: an exception
 *    while a store scope is open never publishes a half-written checkpoint), RestorePath
 *    (det_ckpt_restore_path_end), SearcherOp (det_searcher_op_free), TensorboardWriter
 *    (det_tb_writer_close). All are one template, detail::Handle (a std::unique_ptr with the C
 *    close function as deleter): `.get()` lends the raw handle, `.release()` gives it up,
 *    `.reset()` closes it now; a handle is closed exactly once.
 *  - Area views (`ctx.checkpoint()`, `ctx.train()`, `ctx.preempt()`, `ctx.searcher()`,
 *    `ctx.distributed()`, `ctx.info()`, `ctx.profiler()`) are cheap, non-owning, and must not
 *    outlive their Context. Each C function `det_<area>_<verb>` is one method of the view for
 *    <area>; `det_core_alert` is `ctx.alert()`.
 *  - Callbacks (selectors, the TensorBoard name mangler) are any callables; an exception they
 *    throw is caught at the C boundary (C callbacks must not unwind through detcore), stops the
 *    call, and is rethrown unchanged by the method that took the callback.
 *
 * Adding a C function: add one method to the view of its area that converts the arguments
 * (detail::CStr for strings, .string() for paths), calls the C function inside detail::check(),
 * and converts the out-parameters (detail::take_string for `char **out`).
 */
#ifndef DETCORE_HPP
#define DETCORE_HPP

#include "detcore.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace det {

/* ---- errors ------------------------------------------------------------------------------------ */

/// A failed detcore call: the status code (`DET_ERR_*`) and detcore's message, e.g.
/// `det_ckpt_restore_path_begin: checkpoint 1b6c… not found in directory /data/ckpts`.
class Error : public std::runtime_error {
public:
    Error(det_status status, const std::string &message) : std::runtime_error(message), status_(status) {}
    /// The `DET_ERR_*` code.
    det_status status() const noexcept { return status_; }
    /// The code's name, e.g. `"DET_ERR_NOT_FOUND"`.
    const char *status_name() const noexcept { return det_status_name(status_); }

private:
    det_status status_;
};

namespace detail {

[[noreturn]] inline void throw_last_error(det_status st) {
    throw Error(st, det_last_error_message());
}

/// Throw det::Error for any status other than DET_OK.
inline void check(det_status st) {
    if (st != DET_OK) throw_last_error(st);
}

/// A NUL-terminated copy of a string_view (C strings cannot hold NUL bytes: refused).
class CStr {
public:
    CStr(std::string_view s, const char *what) : s_(s) {
        if (s_.find('\0') != std::string::npos)
            throw Error(DET_ERR_INVALID_ARGUMENT, std::string("det: ") + what + " contains a NUL byte");
    }
    const char *c_str() const noexcept { return s_.c_str(); }

private:
    std::string s_;
};

/// Take ownership of a detcore string (`char **out`): copy it and free it. NULL gives "".
inline std::string take_string(char *p) {
    std::unique_ptr<char, void (*)(char *)> guard(p, det_string_free);
    return p ? std::string(p) : std::string();
}

/// As take_string, with NULL as std::nullopt.
inline std::optional<std::string> take_optional_string(char *p) {
    if (!p) return std::nullopt;
    return take_string(p);
}

/// JSON number text for a double: shortest form that round-trips, `1.0` not `1`, and the
/// `NaN`/`Infinity`/`-Infinity` literals detcore (and Python's json) accept.
inline std::string json_number(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        std::snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (std::strtod(buf, nullptr) == v) break;
    }
    std::string s(buf);
    if (s.find_first_of(".eE") == std::string::npos) s += ".0";
    return s;
}

inline void json_escape(std::string &out, std::string_view s) {
    out += '"';
    for (char ch : s) {
        unsigned char c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                char b[8];
                std::snprintf(b, sizeof b, "\\u%04x", c);
                out += b;
            } else {
                out += ch;
            }
        }
    }
    out += '"';
}

/// A detcore byte-buffer list from a collective, copied into strings and freed.
inline std::vector<std::string> take_bytes_list(det_bytes_list *list) {
    std::unique_ptr<det_bytes_list, det_status (*)(det_bytes_list *)> guard(list, det_bytes_list_free);
    size_t n = 0;
    check(det_bytes_list_len(list, &n));
    std::vector<std::string> out;
    out.reserve(n);
    for (size_t i = 0; i < n; i++) {
        const void *data = nullptr;
        size_t len = 0;
        check(det_bytes_list_get(list, i, &data, &len));
        out.emplace_back(static_cast<const char *>(data), len);
    }
    return out;
}

/* ---- handle ownership ------------------------------------------------------------------------ */

/// Closes a handle with its C function `Close` when its owner lets go of it. A destructor cannot
/// throw, so a failure is printed to stderr as `detcore: ~<Name>: <message>` (the owners' explicit
/// close()/end()/commit() methods throw it instead).
template <class T, det_status (*Close)(T *), const char *Name>
struct Closer {
    void operator()(T *h) const noexcept {
        if (Close(h) != DET_OK) std::fprintf(stderr, "detcore: ~%s: %s\n", Name, det_last_error_message());
    }
};

/// The one owner of a detcore handle, which every RAII type of this header derives from: a
/// std::unique_ptr whose deleter is the handle's C close function (a Closer, or a deleter with
/// state). Move-only. The handle is closed exactly once: by the destructor, by reset() or a
/// move-assignment (the one held before), or by the C call that an owner's method hands it to
/// with take(); release() gives it up unclosed; a moved-from owner holds nothing.
template <class T, class Deleter>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *h, Deleter d = Deleter()) noexcept : h_(h, std::move(d)) {}

    /// The raw handle, lent (nullptr once closed, released or moved from).
    T *get() const noexcept { return h_.get(); }
    /// Give up ownership without closing: the caller must end or free it with the C API.
    T *release() noexcept { return h_.release(); }
    /// Close the handle held now (a failure is printed, as by the destructor) and own `h`.
    void reset(T *h = nullptr) noexcept { h_.reset(h); }
    explicit operator bool() const noexcept { return static_cast<bool>(h_); }

protected:
    /// The handle, or det::Error(DET_ERR_STATE, `gone`) when this owner holds none.
    T *live(const char *gone) const {
        if (!h_) throw Error(DET_ERR_STATE, gone);
        return h_.get();
    }
    /// The handle, given up, for a C call that ends it whatever that call returns.
    T *take(const char *gone) {
        live(gone);
        return h_.release();
    }

private:
    std::unique_ptr<T, Deleter> h_;
};

inline constexpr char kStorePath[] = "det::StorePath";
inline constexpr char kRestorePath[] = "det::RestorePath";
inline constexpr char kSearcherOp[] = "det::SearcherOp";
inline constexpr char kTensorboardWriter[] = "det::TensorboardWriter";
inline constexpr char kContext[] = "det::Context";

/// StorePath's deleter: an open scope is aborted (its folder removed), with a warning unless the
/// owner dies in the unwinding of an exception that began after it was made (which says why).
struct StoreAbort {
    int uncaught = std::uncaught_exceptions();
    void operator()(det_ckpt_store *h) const noexcept {
        if (std::uncaught_exceptions() <= uncaught) {
            const char *id = nullptr;
            det_ckpt_store_storage_id(h, &id);
            std::fprintf(stderr, "detcore: det::StorePath %s destroyed without commit(); the checkpoint was discarded\n",
                         id ? id : "");
        }
        Closer<det_ckpt_store, det_ckpt_store_path_abort, kStorePath>()(h);
    }
};

}  // namespace detail

/* ---- small value types ------------------------------------------------------------------------- */

/// `PreemptMode` (`DET_PREEMPT_MODE_*`).
enum class PreemptMode : int32_t {
    WorkersAskChief = DET_PREEMPT_MODE_WORKERS_ASK_CHIEF,
    ChiefOnly = DET_PREEMPT_MODE_CHIEF_ONLY,
    WorkersAskMaster = DET_PREEMPT_MODE_WORKERS_ASK_MASTER,
};
/// `TensorboardMode` (`DET_TENSORBOARD_MODE_*`).
enum class TensorboardMode : int32_t { Auto = DET_TENSORBOARD_MODE_AUTO, Manual = DET_TENSORBOARD_MODE_MANUAL };
/// `DownloadMode` (`DET_DOWNLOAD_MODE_*`).
enum class DownloadMode : int32_t {
    LocalWorkersShareDownload = DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD,
    NoSharedDownload = DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD,
};
/// `SearcherMode` (`DET_SEARCHER_MODE_*`).
enum class SearcherMode : int32_t {
    WorkersAskChief = DET_SEARCHER_MODE_WORKERS_ASK_CHIEF,
    ChiefOnly = DET_SEARCHER_MODE_CHIEF_ONLY,
};
/// `searcher.Unit` (`DET_UNIT_*`; "none" is std::nullopt).
enum class Unit : int32_t { Epochs = DET_UNIT_EPOCHS, Records = DET_UNIT_RECORDS, Batches = DET_UNIT_BATCHES };
/// `EarlyExitReason` (`DET_EARLY_EXIT_*`).
enum class EarlyExitReason : int32_t { InvalidHp = DET_EARLY_EXIT_INVALID_HP };
/// A launcher whose environment describes the ranks (`DET_LAUNCHER_*`).
enum class Launcher : int32_t {
    Auto = DET_LAUNCHER_AUTO,
    Torch = DET_LAUNCHER_TORCH,
    DeepSpeed = DET_LAUNCHER_DEEPSPEED,
    Horovod = DET_LAUNCHER_HOROVOD,
    OpenMpi = DET_LAUNCHER_OPENMPI,
    Mpich = DET_LAUNCHER_MPICH,
    Slurm = DET_LAUNCHER_SLURM,
    /// Determined's own rendezvous files, on-cluster (Auto picks it there when no launcher's
    /// variables are set).
    Determined = DET_LAUNCHER_DETERMINED,
};
/// How `StorePath::commit` hands a checkpoint over (`DET_UPLOAD_MODE_*`).
enum class UploadMode : int32_t {
    /// As `Options::async_checkpoints` says.
    Default = DET_UPLOAD_MODE_DEFAULT,
    /// Return once the checkpoint is stored and reported.
    Sync = DET_UPLOAD_MODE_SYNC,
    /// Return once the files are handed to the background uploader (`Checkpoint::wait()` waits).
    Async = DET_UPLOAD_MODE_ASYNC,
};
/// The level of `Context::alert` (`DET_ALERT_LEVEL_*`; Python's "info", "warn", "debug", "error").
enum class AlertLevel : int32_t {
    Info = DET_ALERT_LEVEL_INFO,
    Warn = DET_ALERT_LEVEL_WARN,
    Debug = DET_ALERT_LEVEL_DEBUG,
    Error = DET_ALERT_LEVEL_ERROR,
};
/// Log thresholds (`DET_LOG_LEVEL_*`).
enum class LogLevel : int32_t {
    Debug = DET_LOG_LEVEL_DEBUG,
    Info = DET_LOG_LEVEL_INFO,
    Warning = DET_LOG_LEVEL_WARNING,
    Error = DET_LOG_LEVEL_ERROR,
    Off = DET_LOG_LEVEL_OFF,
};

/// The library's version, `"MAJOR.MINOR.PATCH"` (compare with DET_VERSION_STRING).
inline std::string_view version() noexcept { return det_version(); }

/// Set the process-wide log threshold.
inline void set_log_level(LogLevel level) { detail::check(det_log_set_level(static_cast<int32_t>(level))); }

/// A tiny JSON object builder for metadata and metrics: `JsonObject().add("steps_completed", 10)
/// .add("reason", "periodic").add("loss", 0.25)`. Integers stay integers, doubles are written so
/// they read back exactly, strings are escaped; `add_raw` inserts JSON text as is.
class JsonObject {
public:
    template <class T>
    JsonObject &add(std::string_view key, const T &value) {
        start(key);
        if constexpr (std::is_same_v<T, bool>) {
            body_ += value ? "true" : "false";
        } else if constexpr (std::is_integral_v<T>) {
            body_ += std::to_string(value);
        } else if constexpr (std::is_floating_point_v<T>) {
            body_ += detail::json_number(static_cast<double>(value));
        } else if constexpr (std::is_convertible_v<const T &, std::string_view>) {
            detail::json_escape(body_, std::string_view(value));
        } else if constexpr (std::is_same_v<T, JsonObject>) {
            body_ += value.str();
        } else {
            static_assert(std::is_same_v<T, bool>, "JsonObject::add: use a number, bool, string or JsonObject");
        }
        return *this;
    }
    /// Insert `json` (already JSON text: an array, an object, null) under `key`.
    JsonObject &add_raw(std::string_view key, std::string_view json) {
        start(key);
        body_ += json;
        return *this;
    }
    /// The object as JSON text.
    std::string str() const { return "{" + body_ + "}"; }
    bool empty() const noexcept { return body_.empty(); }

private:
    void start(std::string_view key) {
        if (!body_.empty()) body_ += ", ";
        detail::json_escape(body_, key);
        body_ += ": ";
    }
    std::string body_;
};

/// Scalar metrics for the typed fast path (no JSON): names and values kept ready for
/// det_train_report_scalars, so reporting the same Metrics every step allocates nothing.
/// Built from `{{"loss", 0.5}, {"accuracy", 0.9}}`, a std::map or std::unordered_map; `set`
/// updates a value in place.
class Metrics {
public:
    Metrics() = default;
    Metrics(std::initializer_list<std::pair<std::string_view, double>> items) {
        for (const auto &kv : items) set(kv.first, kv.second);
    }
    Metrics(const std::map<std::string, double> &m) {  // NOLINT: implicit on purpose
        for (const auto &kv : m) set(kv.first, kv.second);
    }
    Metrics(const std::unordered_map<std::string, double> &m) {  // NOLINT: implicit on purpose
        for (const auto &kv : m) set(kv.first, kv.second);
    }
    Metrics(const Metrics &o) : names_(o.names_), values_(o.values_) { relink(); }
    Metrics &operator=(const Metrics &o) {
        if (this != &o) {
            names_ = o.names_;
            values_ = o.values_;
            relink();
        }
        return *this;
    }
    Metrics(Metrics &&) noexcept = default;  // moving the vectors keeps the strings in place
    Metrics &operator=(Metrics &&) noexcept = default;
    ~Metrics() = default;

    /// Set `name` to `value` (added at the end if new).
    Metrics &set(std::string_view name, double value) {
        for (size_t i = 0; i < names_.size(); i++) {
            if (names_[i] == name) {
                values_[i] = value;
                return *this;
            }
        }
        if (name.find('\0') != std::string_view::npos)
            throw Error(DET_ERR_INVALID_ARGUMENT, "det::Metrics: a metric name contains a NUL byte");
        names_.emplace_back(name);
        values_.push_back(value);
        relink();
        return *this;
    }
    size_t size() const noexcept { return names_.size(); }
    const char *const *names() const noexcept { return ptrs_.data(); }
    const double *values() const noexcept { return values_.data(); }
    /// The value of `name`, or std::nullopt.
    std::optional<double> get(std::string_view name) const {
        for (size_t i = 0; i < names_.size(); i++)
            if (names_[i] == name) return values_[i];
        return std::nullopt;
    }

private:
    void relink() {
        ptrs_.clear();
        for (const auto &n : names_) ptrs_.push_back(n.c_str());
    }
    std::vector<std::string> names_;
    std::vector<double> values_;
    std::vector<const char *> ptrs_;
};

/// A selector for upload/download/restore: return true to include `path` (relative to the
/// checkpoint root; folders end in `/`). It may throw: the exception stops the selection and is
/// rethrown by the call that used it.
using Selector = std::function<bool(std::string_view path)>;

namespace detail {

struct SelectorCall {
    const Selector *fn;
    std::exception_ptr error;
};

inline bool selector_trampoline(const char *path, void *userdata) noexcept {
    auto *call = static_cast<SelectorCall *>(userdata);
    if (call->error) return false;
    try {
        return (*call->fn)(path);
    } catch (...) {
        call->error = std::current_exception();
        return false;
    }
}

}  // namespace detail

/// A TensorBoard name mangler for `Train::upload_tensorboard_files` (Python's `mangler(path,
/// rank)`): given a file's name relative to the TensorBoard folder (`/`-separated) and this
/// process's rank, return the relative name to store it under (return `path` to keep it). It
/// may throw: the exception abandons the upload call and is rethrown by it.
using TbMangler = std::function<std::string(std::string_view path, int32_t rank)>;

namespace detail {

struct TbUploadCall {
    SelectorCall selector;
    const TbMangler *mangler;
    std::exception_ptr error;
};

inline bool tb_mangler_trampoline(const char *path, int32_t rank, char *name, size_t name_size,
                                  void *userdata) noexcept {
    auto *call = static_cast<TbUploadCall *>(userdata);
    if (call->error || call->selector.error) return false;
    try {
        std::string n = (*call->mangler)(path, rank);
        if (n.find('\0') != std::string::npos)
            throw Error(DET_ERR_INVALID_ARGUMENT,
                        std::string("det::Train::upload_tensorboard_files: the mangler's name for \"") + path +
                            "\" contains a NUL byte");
        if (n.size() >= name_size)
            throw Error(DET_ERR_INVALID_ARGUMENT,
                        std::string("det::Train::upload_tensorboard_files: the mangler's name for \"") + path +
                            "\" is " + std::to_string(n.size()) + " bytes; at most " + std::to_string(name_size - 1) +
                            " (DET_TB_NAME_MAX - 1) fit");
        std::memcpy(name, n.data(), n.size());
        name[n.size()] = '\0';
        return true;
    } catch (...) {
        call->error = std::current_exception();
        return false;
    }
}

}  // namespace detail

/* ---- options ----------------------------------------------------------------------------------- */

/// Where this process stands in a distributed job (`det_distributed_config`). Default: rank 0 of 1.
class DistributedConfig {
public:
    DistributedConfig() { detail::check(det_distributed_config_default(&cfg_, sizeof cfg_)); }

    /// The ranks as `launcher` exported them (torchrun, DeepSpeed, Horovod, Open MPI, MPICH,
    /// Slurm; Auto picks the first present).
    static DistributedConfig from_env(Launcher launcher = Launcher::Auto) {
        DistributedConfig c;
        detail::check(det_distributed_from_env(static_cast<int32_t>(launcher), &c.cfg_));
        if (c.cfg_.chief_ip) c.chief_ip_ = c.cfg_.chief_ip;
        c.cfg_.chief_ip = nullptr;
        if (c.cfg_.job_id) c.job_id_ = c.cfg_.job_id;
        c.cfg_.job_id = nullptr;
        return c;
    }

    DistributedConfig &rank(int32_t v) { return set(cfg_.rank, v); }
    DistributedConfig &size(int32_t v) { return set(cfg_.size, v); }
    DistributedConfig &local_rank(int32_t v) { return set(cfg_.local_rank, v); }
    DistributedConfig &local_size(int32_t v) { return set(cfg_.local_size, v); }
    DistributedConfig &cross_rank(int32_t v) { return set(cfg_.cross_rank, v); }
    DistributedConfig &cross_size(int32_t v) { return set(cfg_.cross_size, v); }
    DistributedConfig &chief_ip(std::string_view v) {
        chief_ip_ = detail::CStr(v, "chief_ip").c_str();
        return *this;
    }
    DistributedConfig &port(int32_t v) { return set(cfg_.port, v); }
    /// The job's identity, the same on every rank of one job (default: DETCORE_JOB_ID, else
    /// the launcher's); ranks and chiefs of different jobs refuse each other.
    DistributedConfig &job_id(std::string_view v) {
        job_id_ = detail::CStr(v, "job_id").c_str();
        return *this;
    }
    DistributedConfig &connect_timeout_seconds(double v) { return set(cfg_.connect_timeout_seconds, v); }
    DistributedConfig &collective_timeout_seconds(double v) { return set(cfg_.collective_timeout_seconds, v); }

    int32_t rank() const noexcept { return cfg_.rank; }
    int32_t size() const noexcept { return cfg_.size; }
    int32_t local_rank() const noexcept { return cfg_.local_rank; }
    int32_t local_size() const noexcept { return cfg_.local_size; }
    int32_t cross_rank() const noexcept { return cfg_.cross_rank; }
    int32_t cross_size() const noexcept { return cfg_.cross_size; }
    const std::string &chief_ip() const noexcept { return chief_ip_; }
    int32_t port() const noexcept { return cfg_.port; }
    const std::string &job_id() const noexcept { return job_id_; }

    /// The C struct; its chief_ip and job_id point into this object.
    det_distributed_config c_config() const {
        det_distributed_config c = cfg_;
        c.chief_ip = chief_ip_.empty() ? nullptr : chief_ip_.c_str();
        c.job_id = job_id_.empty() ? nullptr : job_id_.c_str();
        return c;
    }

private:
    template <class T>
    DistributedConfig &set(T &field, T v) {
        field = v;
        return *this;
    }
    det_distributed_config cfg_{};
    std::string chief_ip_;
    std::string job_id_;
};

/// Options of det::Context (`det_init_options`). Unset options keep detcore's defaults
/// (documented on det_init_options in detcore.h).
class Options {
public:
    /// A directory path, `file:///path`, `s3://bucket/prefix`, `gs://bucket/prefix` or a JSON object.
    Options &checkpoint_storage(std::string_view v) { return str(checkpoint_storage_, v, "checkpoint_storage"); }
    /// A directory to store checkpoints in.
    Options &checkpoint_dir(const std::filesystem::path &v) { return checkpoint_storage(v.string()); }
    Options &preempt_mode(PreemptMode v) { return set(preempt_mode_, v); }
    Options &tensorboard_mode(TensorboardMode v) { return set(tensorboard_mode_, v); }
    Options &run_name(std::string_view v) { return str(run_name_, v, "run_name"); }
    Options &run_dir(const std::filesystem::path &v) { return str(run_dir_, v.string(), "run_dir"); }
    /// Off-cluster hyperparameters, a JSON object (`JsonObject(...).str()` builds one).
    Options &hparams_json(std::string_view v) { return str(hparams_json_, v, "hparams_json"); }
    Options &searcher_max_length(int64_t v) { return set(searcher_max_length_, v); }
    Options &preempt_signals(std::vector<int32_t> v) { return set(preempt_signals_, std::move(v)); }
    Options &disable_signal_handlers(bool v = true) { return set(disable_signal_handlers_, v); }
    Options &async_checkpoints(bool v = true) { return set(async_checkpoints_, v); }
    Options &halt_file(const std::filesystem::path &v) { return str(halt_file_, v.string(), "halt_file"); }
    Options &end_time(double v) { return set(end_time_, v); }
    Options &halt_margin_seconds(double v) { return set(halt_margin_seconds_, v); }
    Options &distributed(DistributedConfig v) { return set(distributed_, std::move(v)); }
    Options &cluster_info_dir(const std::filesystem::path &v) {
        return str(cluster_info_dir_, v.string(), "cluster_info_dir");
    }
    Options &report_queue_capacity(size_t v) { return set(report_queue_capacity_, v); }
    Options &close_timeout_seconds(double v) { return set(close_timeout_seconds_, v); }
    /// Under Slurm: requeue the job at close after a preemption checkpoint (DETCORE_SLURM_REQUEUE=1).
    Options &slurm_requeue(bool v = true) { return set(slurm_requeue_, v); }
    /// Off-cluster checkpoint retention: keep the `n` newest checkpoints (`save_trial_latest`).
    Options &save_trial_latest(int32_t n) { return set(save_trial_latest_, n); }
    /// Off-cluster checkpoint retention: keep the `n` best by `searcher_metric` (`save_trial_best`).
    Options &save_trial_best(int32_t n) { return set(save_trial_best_, n); }
    /// The metric that ranks checkpoints for `save_trial_best`.
    Options &searcher_metric(std::string_view v) { return str(searcher_metric_, v, "searcher_metric"); }
    Options &smaller_is_better(bool v) { return set(smaller_is_better_, v); }

    /// Call `fn(const det_init_options&)` with the C options (valid during the call).
    template <class F>
    decltype(auto) with_c_options(F &&fn) const {
        det_init_options o;
        detail::check(det_init_options_default(&o, sizeof o));
        auto cs = [](const std::optional<std::string> &s) { return s ? s->c_str() : nullptr; };
        o.checkpoint_storage = cs(checkpoint_storage_);
        if (preempt_mode_) o.preempt_mode = static_cast<int32_t>(*preempt_mode_);
        if (tensorboard_mode_) o.tensorboard_mode = static_cast<int32_t>(*tensorboard_mode_);
        o.run_name = cs(run_name_);
        o.run_dir = cs(run_dir_);
        o.hparams_json = cs(hparams_json_);
        if (searcher_max_length_) o.searcher_max_length = *searcher_max_length_;
        if (preempt_signals_) {
            o.preempt_signals = preempt_signals_->data();
            o.preempt_signals_len = preempt_signals_->size();
        }
        if (disable_signal_handlers_) o.disable_signal_handlers = *disable_signal_handlers_;
        if (async_checkpoints_) o.async_checkpoints = *async_checkpoints_;
        o.halt_file = cs(halt_file_);
        if (end_time_) o.end_time = *end_time_;
        if (halt_margin_seconds_) o.halt_margin_seconds = *halt_margin_seconds_;
        det_distributed_config d{};
        if (distributed_) {
            d = distributed_->c_config();
            o.distributed = &d;
        }
        o.cluster_info_dir = cs(cluster_info_dir_);
        if (report_queue_capacity_) o.report_queue_capacity = *report_queue_capacity_;
        if (close_timeout_seconds_) o.close_timeout_seconds = *close_timeout_seconds_;
        if (slurm_requeue_) o.slurm_requeue = *slurm_requeue_;
        if (save_trial_latest_) o.save_trial_latest = *save_trial_latest_;
        if (save_trial_best_) o.save_trial_best = *save_trial_best_;
        o.searcher_metric = cs(searcher_metric_);
        if (smaller_is_better_) o.smaller_is_better = *smaller_is_better_ ? 1 : 0;
        return fn(static_cast<const det_init_options &>(o));
    }

private:
    template <class T, class V>
    Options &set(std::optional<T> &field, V &&v) {
        field = std::forward<V>(v);
        return *this;
    }
    Options &str(std::optional<std::string> &field, std::string_view v, const char *what) {
        field = detail::CStr(v, what).c_str();
        return *this;
    }
    std::optional<std::string> checkpoint_storage_, run_name_, run_dir_, hparams_json_, halt_file_, cluster_info_dir_,
        searcher_metric_;
    std::optional<PreemptMode> preempt_mode_;
    std::optional<TensorboardMode> tensorboard_mode_;
    std::optional<int64_t> searcher_max_length_;
    std::optional<std::vector<int32_t>> preempt_signals_;
    std::optional<bool> disable_signal_handlers_, async_checkpoints_, slurm_requeue_, smaller_is_better_;
    std::optional<int32_t> save_trial_latest_, save_trial_best_;
    std::optional<double> end_time_, halt_margin_seconds_, close_timeout_seconds_;
    std::optional<DistributedConfig> distributed_;
    std::optional<size_t> report_queue_capacity_;
};

/* ---- RAII handles ------------------------------------------------------------------------------ */

/// An open `store_path` scope: write the checkpoint's files into `path()`, then `commit()` to
/// publish it. Destroyed without commit() (an exception, an early return) it is aborted: the
/// folder is removed and nothing is published.
class StorePath : public detail::Handle<det_ckpt_store, detail::StoreAbort> {
public:
    explicit StorePath(det_ckpt_store *h) noexcept : Handle(h) {}

    /// The folder to write into (absolute).
    [[nodiscard]] std::filesystem::path path() const {
        const char *p = nullptr;
        detail::check(det_ckpt_store_path(live(), &p));
        return std::filesystem::path(p);
    }
    /// The storage id the checkpoint will have.
    [[nodiscard]] std::string storage_id() const {
        const char *p = nullptr;
        detail::check(det_ckpt_store_storage_id(live(), &p));
        return p;
    }
    /// Publish the checkpoint (write metadata.json, make it visible, report it); returns its
    /// storage id. The scope is over afterwards, whether it succeeded or threw.
    std::string commit() {
        char id[DET_STORAGE_ID_LEN] = {0};
        detail::check(det_ckpt_store_path_end(take(kGone), id));
        return id;
    }
    /// commit() with an explicit upload mode (`det_ckpt_store_path_end_mode`): `UploadMode::Async`
    /// returns once the files are handed off (do not touch the folder afterwards; the checkpoint
    /// exists once `Checkpoint::wait()` returns), `Sync` once it is stored and reported. The
    /// scope is over afterwards, except when detcore refused the mode itself (an unknown value):
    /// then it stays open, and is aborted by the destructor unless committed again.
    std::string commit(UploadMode mode) {
        char id[DET_STORAGE_ID_LEN] = {0};
        det_ckpt_store *h = live();
        det_status st = det_ckpt_store_path_end_mode(h, static_cast<int32_t>(mode), id);
        if (st != DET_OK) {
            const std::string msg = det_last_error_message();
            const char *probe = nullptr;
            if (det_ckpt_store_storage_id(h, &probe) != DET_OK) (void)release();  // the scope ended
            throw Error(st, msg);
        }
        (void)release();  // ended by det_ckpt_store_path_end_mode
        return id;
    }
    /// Discard the checkpoint now (its folder is removed).
    void abort() { detail::check(det_ckpt_store_path_abort(take(kGone))); }

private:
    static constexpr const char *kGone = "det::StorePath: the scope was already committed, aborted or released";
    det_ckpt_store *live() const { return Handle::live(kGone); }
};

/// An open `restore_path` scope: the checkpoint's files are under `path()` until it ends.
class RestorePath
    : public detail::Handle<det_ckpt_restore,
                            detail::Closer<det_ckpt_restore, det_ckpt_restore_path_end, detail::kRestorePath>> {
public:
    explicit RestorePath(det_ckpt_restore *h) noexcept : Handle(h) {}

    /// The folder holding the checkpoint's files (read it; do not change it).
    [[nodiscard]] std::filesystem::path path() const {
        const char *p = nullptr;
        detail::check(det_ckpt_restore_path(live(), &p));
        return std::filesystem::path(p);
    }
    /// The checkpoint restored: the one asked for, or after an off-cluster resume fallback the
    /// older checkpoint restored instead.
    [[nodiscard]] std::string storage_id() const {
        const char *p = nullptr;
        detail::check(det_ckpt_restore_storage_id(live(), &p));
        return std::string(p);
    }
    /// End the scope now (a temporary download is removed), reporting failures.
    void end() { detail::check(det_ckpt_restore_path_end(take(kGone))); }

private:
    static constexpr const char *kGone = "det::RestorePath: the scope was already ended or released";
    det_ckpt_restore *live() const { return Handle::live(kGone); }
};

/// A searcher operation: train to `length()` units, report progress, report completion.
class SearcherOp
    : public detail::Handle<det_searcher_op, detail::Closer<det_searcher_op, det_searcher_op_free, detail::kSearcherOp>> {
public:
    explicit SearcherOp(det_searcher_op *h) noexcept : Handle(h) {}

    [[nodiscard]] int64_t length() const {
        int64_t n = 0;
        detail::check(det_searcher_op_length(live(), &n));
        return n;
    }
    void report_progress(double length) { detail::check(det_searcher_op_report_progress(live(), length)); }
    void report_completed(double searcher_metric) {
        detail::check(det_searcher_op_report_completed(live(), searcher_metric));
    }
    /// Complete with any JSON value as the searcher metric.
    void report_completed_json(std::string_view searcher_metric_json) {
        detail::CStr j(searcher_metric_json, "searcher_metric_json");
        detail::check(det_searcher_op_report_completed_json(live(), j.c_str()));
    }

private:
    det_searcher_op *live() const { return Handle::live("det::SearcherOp: the operation was released or moved from"); }
};

/// A writer of TensorBoard event files for your own scalars and histograms (`det_tb_writer_*`;
/// what `torch.utils.tensorboard.SummaryWriter` is in Python). Write into
/// `ctx.train().get_tensorboard_path()` and the files are uploaded with the metrics' events
/// (AUTO mode) or by `upload_tensorboard_files` (MANUAL mode). Events reach the file at the
/// first add a second or more after the previous write (no background thread), on `flush()`
/// and on `close()`. Move-only; the
/// destructor closes it (printing, not throwing, a failure: call close() to get it as an
/// exception). Thread-safe like the C handle.
///
///   det::TensorboardWriter tb(ctx.train().get_tensorboard_path());
///   tb.add_scalar("lr", step, lr);
///   tb.add_histogram("weights", step, w);   // std::vector<double>, or (pointer, count)
class TensorboardWriter
    : public detail::Handle<det_tb_writer, detail::Closer<det_tb_writer, det_tb_writer_close, detail::kTensorboardWriter>> {
public:
    /// Open a writer in `dir` (created at the first write).
    explicit TensorboardWriter(const std::filesystem::path &dir) {
        detail::CStr d(dir.string(), "dir");
        det_tb_writer *h = nullptr;
        detail::check(det_tb_writer_open(d.c_str(), &h));
        reset(h);
    }
    /// Take ownership of a writer opened with the C API.
    static TensorboardWriter adopt(det_tb_writer *h) noexcept { return TensorboardWriter(h); }

    /// The scalar `tag` = `value` at `step` (stored as float32, as TensorFlow does).
    void add_scalar(std::string_view tag, int64_t step, double value) {
        detail::CStr t(tag, "tag");
        detail::check(det_tb_writer_add_scalar(live(), t.c_str(), step, value));
    }
    /// The histogram of `values[0..n)` at `step` (TensorFlow's default buckets; non-finite values
    /// are not counted). The values are read during the call only.
    void add_histogram(std::string_view tag, int64_t step, const double *values, size_t n) {
        detail::CStr t(tag, "tag");
        detail::check(det_tb_writer_add_histogram(live(), t.c_str(), step, n ? values : nullptr, n));
    }
    void add_histogram(std::string_view tag, int64_t step, const std::vector<double> &values) {
        add_histogram(tag, step, values.data(), values.size());
    }
    void add_histogram(std::string_view tag, int64_t step, std::initializer_list<double> values) {
        add_histogram(tag, step, values.begin(), values.size());
    }
    /// Write the events added so far.
    void flush() { detail::check(det_tb_writer_flush(live())); }
    /// Write what is buffered and close the file; throws det::Error on failure. The writer is
    /// closed afterwards either way; closing it again throws (`DET_ERR_STATE`).
    void close() { detail::check(det_tb_writer_close(take(kGone))); }

private:
    static constexpr const char *kGone = "det::TensorboardWriter: used after close(), release() or a move";
    explicit TensorboardWriter(det_tb_writer *h) noexcept : Handle(h) {}
    det_tb_writer *live() const { return Handle::live(kGone); }
};

/* ---- area views -------------------------------------------------------------------------------- */

/// `core_context.checkpoint` (`det_ckpt_*`).
class Checkpoint {
public:
    explicit Checkpoint(det_context *ctx) noexcept : ctx_(ctx) {}

    /// Begin `store_path(metadata, shard)`; metadata must hold an integer "steps_completed".
    [[nodiscard]] StorePath store_path(std::string_view metadata_json, bool shard = false) {
        detail::CStr m(metadata_json, "metadata_json");
        det_ckpt_store *h = nullptr;
        detail::check(det_ckpt_store_path_begin(ctx_, m.c_str(), shard, &h));
        return StorePath(h);
    }
    [[nodiscard]] StorePath store_path(const JsonObject &metadata, bool shard = false) {
        return store_path(metadata.str(), shard);
    }

    /// Begin `store_path` at `steps_completed`, without formatting JSON: the metadata is
    /// {"steps_completed": steps_completed} followed by the entries of `extra` (which must not
    /// hold "steps_completed").
    [[nodiscard]] StorePath store_path_steps(int64_t steps_completed, const JsonObject &extra = {},
                                             bool shard = false) {
        const std::string e = extra.str();
        det_ckpt_store *h = nullptr;
        detail::check(det_ckpt_store_path_begin_steps(ctx_, steps_completed, extra.empty() ? nullptr : e.c_str(),
                                                      shard, &h));
        return StorePath(h);
    }
    /// `with store_path({"steps_completed": n, ...extra}) as (path, storage_id): write(path,
    /// storage_id)`; returns the storage id (as the store_path form that takes a callable).
    template <class F, class = std::enable_if_t<
                           std::is_invocable_v<F &, const std::filesystem::path &, const std::string &>>>
    std::string store_path_steps(int64_t steps_completed, F &&write, const JsonObject &extra = {},
                                 bool shard = false, UploadMode mode = UploadMode::Default) {
        StorePath scope = store_path_steps(steps_completed, extra, shard);
        const std::filesystem::path dir = scope.path();
        const std::string id = scope.storage_id();
        write(dir, id);  // on an exception ~StorePath aborts
        return mode == UploadMode::Default ? scope.commit() : scope.commit(mode);
    }

    /// `with store_path(metadata) as (path, storage_id): write(path, storage_id)` — calls
    /// `write(const std::filesystem::path&, const std::string&)`, then publishes the checkpoint
    /// (with `mode`, see StorePath::commit) and returns its storage id. If `write` throws,
    /// nothing is published and the exception propagates.
    template <class F, class = std::enable_if_t<
                           std::is_invocable_v<F &, const std::filesystem::path &, const std::string &>>>
    std::string store_path(std::string_view metadata_json, F &&write, bool shard = false,
                           UploadMode mode = UploadMode::Default) {
        StorePath scope = store_path(metadata_json, shard);
        const std::filesystem::path dir = scope.path();
        const std::string id = scope.storage_id();
        write(dir, id);  // on an exception ~StorePath aborts
        return mode == UploadMode::Default ? scope.commit() : scope.commit(mode);
    }
    template <class F, class = std::enable_if_t<
                           std::is_invocable_v<F &, const std::filesystem::path &, const std::string &>>>
    std::string store_path(const JsonObject &metadata, F &&write, bool shard = false,
                           UploadMode mode = UploadMode::Default) {
        return store_path(metadata.str(), std::forward<F>(write), shard, mode);
    }

    /// `upload(dir, metadata, shard, selector)`: store the files of `dir` as a new checkpoint.
    std::string upload(const std::filesystem::path &dir, std::string_view metadata_json, bool shard = false,
                       const Selector &selector = {}) {
        detail::CStr d(dir.string(), "dir"), m(metadata_json, "metadata_json");
        char id[DET_STORAGE_ID_LEN] = {0};
        detail::SelectorCall call{&selector, nullptr};
        det_status st = det_ckpt_upload(ctx_, d.c_str(), m.c_str(), shard,
                                        selector ? detail::selector_trampoline : nullptr, &call, id);
        if (call.error) std::rethrow_exception(call.error);
        detail::check(st);
        return id;
    }

    /// `download(storage_id, dir, download_mode, selector)`.
    void download(std::string_view storage_id, const std::filesystem::path &dir,
                  DownloadMode mode = DownloadMode::LocalWorkersShareDownload, const Selector &selector = {}) {
        detail::CStr s(storage_id, "storage_id"), d(dir.string(), "dir");
        detail::SelectorCall call{&selector, nullptr};
        det_status st = det_ckpt_download(ctx_, s.c_str(), d.c_str(), static_cast<int32_t>(mode),
                                          selector ? detail::selector_trampoline : nullptr, &call);
        if (call.error) std::rethrow_exception(call.error);
        detail::check(st);
    }

    /// Begin `restore_path(storage_id, download_mode, selector)`. The files stay under
    /// `path()` until the RestorePath ends (destroyed, or `end()`): keep it alive until
    /// everything is read (model build, data-loader set-up).
    [[nodiscard]] RestorePath restore_path(std::string_view storage_id,
                                           DownloadMode mode = DownloadMode::LocalWorkersShareDownload,
                                           const Selector &selector = {}) {
        detail::CStr s(storage_id, "storage_id");
        detail::SelectorCall call{&selector, nullptr};
        det_ckpt_restore *h = nullptr;
        det_status st = det_ckpt_restore_path_begin(ctx_, s.c_str(), static_cast<int32_t>(mode),
                                                    selector ? detail::selector_trampoline : nullptr, &call, &h);
        RestorePath scope(st == DET_OK ? h : nullptr);
        if (call.error) std::rethrow_exception(call.error);
        detail::check(st);
        return scope;
    }

    /// `with restore_path(storage_id) as path: return read(path)`.
    template <class F, class = std::enable_if_t<std::is_invocable_v<F &, const std::filesystem::path &>>>
    decltype(auto) restore_path(std::string_view storage_id, F &&read,
                                DownloadMode mode = DownloadMode::LocalWorkersShareDownload,
                                const Selector &selector = {}) {
        RestorePath scope = restore_path(storage_id, mode, selector);
        const std::filesystem::path dir = scope.path();
        return read(dir);
    }

    /// The checkpoint's metadata as JSON text.
    [[nodiscard]] std::string get_metadata(std::string_view storage_id) {
        detail::CStr s(storage_id, "storage_id");
        char *out = nullptr;
        detail::check(det_ckpt_get_metadata(ctx_, s.c_str(), &out));
        return detail::take_string(out);
    }

    /// `delete(storage_id)`.
    void delete_checkpoint(std::string_view storage_id) {
        detail::CStr s(storage_id, "storage_id");
        detail::check(det_ckpt_delete(ctx_, s.c_str()));
    }

    /// Wait for asynchronous uploads.
    void wait() { detail::check(det_ckpt_wait(ctx_)); }

private:
    det_context *ctx_;
};

/// `core_context.train` (`det_train_*`).
class Train {
public:
    explicit Train(det_context *ctx) noexcept : ctx_(ctx) {}

    /// Typed fast path: `report_training_metrics(step, {{"loss", l}, {"accuracy", a}})`.
    void report_training_metrics(int64_t steps_completed, const Metrics &metrics) {
        report_metrics("training", steps_completed, metrics);
    }
    void report_validation_metrics(int64_t steps_completed, const Metrics &metrics) {
        report_metrics("validation", steps_completed, metrics);
    }
    /// `report_metrics(group, steps_completed, metrics)` with scalar metrics.
    void report_metrics(std::string_view group, int64_t steps_completed, const Metrics &metrics) {
        detail::CStr g(group, "group");
        detail::check(det_train_report_scalars(ctx_, g.c_str(), steps_completed, metrics.names(), metrics.values(),
                                               metrics.size()));
    }

    /// JSON forms (any JSON values; `batch_metrics_json` empty means none).
    void report_training_metrics_json(int64_t steps_completed, std::string_view metrics_json,
                                      std::string_view batch_metrics_json = {}) {
        detail::CStr m(metrics_json, "metrics_json"), b(batch_metrics_json, "batch_metrics_json");
        detail::check(det_train_report_training_metrics(ctx_, steps_completed, m.c_str(),
                                                        batch_metrics_json.empty() ? nullptr : b.c_str()));
    }
    void report_validation_metrics_json(int64_t steps_completed, std::string_view metrics_json) {
        detail::CStr m(metrics_json, "metrics_json");
        detail::check(det_train_report_validation_metrics(ctx_, steps_completed, m.c_str()));
    }
    void report_metrics_json(std::string_view group, int64_t steps_completed, std::string_view metrics_json) {
        detail::CStr g(group, "group"), m(metrics_json, "metrics_json");
        detail::check(det_train_report_metrics(ctx_, g.c_str(), steps_completed, m.c_str()));
    }

    void set_status(std::string_view status) {
        detail::CStr s(status, "status");
        detail::check(det_train_set_status(ctx_, s.c_str()));
    }
    void report_progress(double progress) { detail::check(det_train_report_progress(ctx_, progress)); }
    void report_early_exit(EarlyExitReason reason) {
        detail::check(det_train_report_early_exit(ctx_, static_cast<int32_t>(reason)));
    }
    /// The experiment's best searcher metric so far (std::nullopt: none yet, always off-cluster).
    [[nodiscard]] std::optional<double> get_experiment_best_validation() {
        bool found = false;
        double v = 0;
        detail::check(det_train_get_experiment_best_validation(ctx_, &found, &v));
        return found ? std::optional<double>(v) : std::nullopt;
    }
    /// Merge a JSON object into the run's metadata; returns the result as JSON text.
    std::string set_metadata(std::string_view metadata_json) {
        detail::CStr m(metadata_json, "metadata_json");
        char *out = nullptr;
        detail::check(det_train_set_run_metadata(ctx_, m.c_str(), &out));
        return detail::take_string(out);
    }
    [[nodiscard]] std::string get_metadata() {
        char *out = nullptr;
        detail::check(det_train_get_run_metadata(ctx_, &out));
        return detail::take_string(out);
    }
    /// Wait until every report so far is delivered (tests, phase hand-offs).
    void flush(double timeout_seconds = 60) { detail::check(det_train_flush(ctx_, timeout_seconds)); }

    /// `get_tensorboard_path()`: the local TensorBoard folder (`<run_dir>/tensorboard`
    /// off-cluster, `$TMPDIR/tensorboard-<allocation_id>-<rank>` on-cluster). Files written there
    /// (a TensorboardWriter's, profiler traces) are uploaded with the metrics' event files.
    [[nodiscard]] std::filesystem::path get_tensorboard_path() {
        char *s = nullptr;
        detail::check(det_train_get_tensorboard_path(ctx_, &s));
        return std::filesystem::path(detail::take_string(s));
    }
    /// `upload_tensorboard_files(selector, mangler)`, TensorboardMode::Manual only (else
    /// `DET_ERR_STATE`): queue the files of the TensorBoard folder that `selector` accepts (empty:
    /// all; it gets names relative to the folder), each stored under `mangler(name, rank)` (empty:
    /// the name itself). Returns once the files are listed; `flush_tensorboard()` waits for the
    /// uploads. An exception from `mangler` abandons the call (nothing is queued) and is rethrown;
    /// one from `selector` stops the selection (files it accepted before are still queued) and is
    /// rethrown.
    void upload_tensorboard_files(const Selector &selector = {}, const TbMangler &mangler = {}) {
        detail::TbUploadCall call{{&selector, nullptr}, &mangler, nullptr};
        det_status st = det_train_upload_tensorboard_files(
            ctx_, selector ? detail::selector_trampoline : nullptr, &call.selector,
            mangler ? detail::tb_mangler_trampoline : nullptr, &call);
        if (call.selector.error) std::rethrow_exception(call.selector.error);
        if (call.error) std::rethrow_exception(call.error);
        detail::check(st);
    }
    /// Wait until the TensorBoard files are in the checkpoint storage (tests, phase hand-offs).
    void flush_tensorboard(double timeout_seconds = 60) {
        detail::check(det_train_flush_tensorboard(ctx_, timeout_seconds));
    }

private:
    det_context *ctx_;
};

/// `core_context.preempt` (`det_should_preempt*`, `det_preempt_*`).
class Preempt {
public:
    explicit Preempt(det_context *ctx) noexcept : ctx_(ctx) {}
    /// Costs nanoseconds: call it every step.
    [[nodiscard]] bool should_preempt(bool auto_ack = true) {
        bool out = false;
        detail::check(auto_ack ? det_should_preempt(ctx_, &out) : det_should_preempt_ex(ctx_, false, &out));
        return out;
    }
    void acknowledge_preemption_signal() { detail::check(det_preempt_acknowledge(ctx_)); }
    /// Seconds until the job's end time, or std::nullopt when none is known.
    [[nodiscard]] std::optional<double> seconds_remaining() {
        bool known = false;
        double s = 0;
        detail::check(det_preempt_seconds_remaining(ctx_, &known, &s));
        return known ? std::optional<double>(s) : std::nullopt;
    }

private:
    det_context *ctx_;
};

/// `core_context.searcher` (`det_searcher_*`).
class Searcher {
public:
    explicit Searcher(det_context *ctx) noexcept : ctx_(ctx) {}

    /// The next operation, or std::nullopt when there are no more. Complete each one first.
    [[nodiscard]] std::optional<SearcherOp> next_op(SearcherMode mode = SearcherMode::WorkersAskChief) {
        det_searcher_op *h = nullptr;
        detail::check(det_searcher_next_op(ctx_, static_cast<int32_t>(mode), &h));
        if (!h) return std::nullopt;
        return SearcherOp(h);
    }

    /// `for (det::SearcherOp& op : ctx.searcher().operations()) { ... op.report_completed(m); }`
    class Operations {
    public:
        class iterator {
        public:
            using iterator_category = std::input_iterator_tag;
            using value_type = SearcherOp;
            using difference_type = std::ptrdiff_t;
            using pointer = SearcherOp *;
            using reference = SearcherOp &;
            iterator() = default;
            iterator(det_context *ctx, SearcherMode mode) : ctx_(ctx), mode_(mode) { advance(); }
            reference operator*() { return *op_; }
            pointer operator->() { return &*op_; }
            iterator &operator++() {
                advance();
                return *this;
            }
            bool operator==(const iterator &o) const noexcept { return !op_ && !o.op_; }
            bool operator!=(const iterator &o) const noexcept { return !(*this == o); }

        private:
            void advance() {
                op_.reset();
                op_ = Searcher(ctx_).next_op(mode_);
            }
            det_context *ctx_ = nullptr;
            SearcherMode mode_ = SearcherMode::WorkersAskChief;
            std::optional<SearcherOp> op_;
        };
        Operations(det_context *ctx, SearcherMode mode) : ctx_(ctx), mode_(mode) {}
        iterator begin() { return iterator(ctx_, mode_); }
        iterator end() { return iterator(); }

    private:
        det_context *ctx_;
        SearcherMode mode_;
    };
    [[nodiscard]] Operations operations(SearcherMode mode = SearcherMode::WorkersAskChief) {
        return Operations(ctx_, mode);
    }

    /// The configured unit, or std::nullopt when the config names none.
    [[nodiscard]] std::optional<Unit> get_configured_units() {
        int32_t u = DET_UNIT_NONE;
        detail::check(det_searcher_get_configured_units(ctx_, &u));
        if (u == DET_UNIT_NONE) return std::nullopt;
        return static_cast<Unit>(u);
    }
    void acknowledge_out_of_ops() { detail::check(det_searcher_acknowledge_out_of_ops(ctx_)); }

private:
    det_context *ctx_;
};

/// `core_context.distributed` (`det_dist_*`). Collectives move bytes (control-plane data, not
/// tensors); every rank must call them in the same order.
class Distributed {
public:
    explicit Distributed(det_context *ctx) noexcept : ctx_(ctx) {}

    [[nodiscard]] int32_t rank() const { return get(det_dist_rank); }
    [[nodiscard]] int32_t size() const { return get(det_dist_size); }
    [[nodiscard]] int32_t local_rank() const { return get(det_dist_local_rank); }
    [[nodiscard]] int32_t local_size() const { return get(det_dist_local_size); }
    [[nodiscard]] int32_t cross_rank() const { return get(det_dist_cross_rank); }
    [[nodiscard]] int32_t cross_size() const { return get(det_dist_cross_size); }

    /// Every rank's bytes, in rank order, on the chief; std::nullopt on the other ranks.
    [[nodiscard]] std::optional<std::vector<std::string>> gather(std::string_view data) {
        return maybe(collect(det_dist_gather, data));
    }
    [[nodiscard]] std::vector<std::string> allgather(std::string_view data) {
        return detail::take_bytes_list(collect(det_dist_allgather, data));
    }
    /// The chief's bytes on every rank (other ranks' `data` is ignored).
    [[nodiscard]] std::string broadcast(std::string_view data = {}) {
        return one(collect(det_dist_broadcast, data));
    }
    [[nodiscard]] std::optional<std::vector<std::string>> gather_local(std::string_view data) {
        return maybe(collect(det_dist_gather_local, data));
    }
    [[nodiscard]] std::vector<std::string> allgather_local(std::string_view data) {
        return detail::take_bytes_list(collect(det_dist_allgather_local, data));
    }
    [[nodiscard]] std::string broadcast_local(std::string_view data = {}) {
        return one(collect(det_dist_broadcast_local, data));
    }
    void barrier() { detail::check(det_dist_barrier(ctx_)); }

    /// allgather of a trivially copyable value (all ranks must use the same T).
    template <class T>
    [[nodiscard]] std::vector<T> allgather_value(const T &value) {
        static_assert(std::is_trivially_copyable_v<T>, "allgather_value needs a trivially copyable type");
        std::vector<T> out;
        for (const std::string &b : allgather(as_bytes(value))) out.push_back(from_bytes<T>(b));
        return out;
    }
    /// broadcast of a trivially copyable value: the chief's `value` on every rank.
    template <class T>
    [[nodiscard]] T broadcast_value(const T &value) {
        static_assert(std::is_trivially_copyable_v<T>, "broadcast_value needs a trivially copyable type");
        return from_bytes<T>(broadcast(as_bytes(value)));
    }

private:
    using Collective = det_status (*)(det_context *, const void *, size_t, det_bytes_list **);
    int32_t get(det_status (*fn)(const det_context *, int32_t *)) const {
        int32_t v = 0;
        detail::check(fn(ctx_, &v));
        return v;
    }
    det_bytes_list *collect(Collective fn, std::string_view data) {
        det_bytes_list *out = nullptr;
        detail::check(fn(ctx_, data.empty() ? nullptr : data.data(), data.size(), &out));
        return out;
    }
    static std::optional<std::vector<std::string>> maybe(det_bytes_list *l) {
        if (!l) return std::nullopt;
        return detail::take_bytes_list(l);
    }
    static std::string one(det_bytes_list *l) {
        std::vector<std::string> v = detail::take_bytes_list(l);
        if (v.size() != 1) throw Error(DET_ERR_INTERNAL, "det::Distributed: broadcast returned " + std::to_string(v.size()) + " items");
        return std::move(v[0]);
    }
    template <class T>
    static std::string_view as_bytes(const T &v) {
        return std::string_view(reinterpret_cast<const char *>(&v), sizeof v);
    }
    template <class T>
    static T from_bytes(const std::string &b) {
        if (b.size() != sizeof(T))
            throw Error(DET_ERR_DISTRIBUTED, "det::Distributed: a rank sent " + std::to_string(b.size()) +
                                                 " bytes, expected " + std::to_string(sizeof(T)));
        T v;
        std::memcpy(&v, b.data(), sizeof v);
        return v;
    }
    det_context *ctx_;
};

/// `core_context.profiler` (`det_profiler_*`): system metrics (CPU, memory, disk, network, GPUs
/// through NVML) sampled on a background thread of the local chief and reported as Determined's
/// profiler groups (the WebUI on-cluster; metrics.jsonl and TensorBoard off-cluster).
class Profiler {
public:
    explicit Profiler(det_context *ctx) noexcept : ctx_(ctx) {}
    /// Start sampling every `sampling_interval` seconds (>= 0.1) and report the mean of every
    /// `samples_per_report` samples (>= 1). Idempotent: while on, another call does nothing.
    void on(double sampling_interval = 1, int32_t samples_per_report = 10) {
        detail::check(det_profiler_on(ctx_, sampling_interval, samples_per_report));
    }
    /// Stop sampling; the unfinished period is reported. Idempotent; close() does it too.
    void off() { detail::check(det_profiler_off(ctx_)); }

private:
    det_context *ctx_;
};

/// `core_context.info` (`det_info_*`). Unlike Python, where `core_context.info` is None
/// off-cluster, detcore has info off-cluster too: hyperparameters and the latest checkpoint of
/// the run.
class Info {
public:
    explicit Info(det_context *ctx) noexcept : ctx_(ctx) {}

    [[nodiscard]] bool on_cluster() const {
        bool b = false;
        detail::check(det_info_is_on_cluster(ctx_, &b));
        return b;
    }
    /// The checkpoint to resume from (std::nullopt: a fresh start).
    [[nodiscard]] std::optional<std::string> latest_checkpoint() const {
        char *s = nullptr;
        detail::check(det_info_latest_checkpoint(ctx_, &s));
        return detail::take_optional_string(s);
    }
    [[nodiscard]] int64_t steps_completed() const {
        int64_t n = 0;
        detail::check(det_info_steps_completed(ctx_, &n));
        return n;
    }
    /// All hyperparameters as a JSON object.
    [[nodiscard]] std::string hparams_json() const {
        char *s = nullptr;
        detail::check(det_info_hparams_json(ctx_, &s));
        return detail::take_string(s);
    }
    /// One hyperparameter (`name` may be a dotted path, "optimizer.lr") as T: a floating-point
    /// type, an integer type or std::string. Throws det::Error(DET_ERR_NOT_FOUND) when absent.
    template <class T>
    [[nodiscard]] T hparam(std::string_view name) const {
        detail::CStr n(name, "name");
        if constexpr (std::is_floating_point_v<T>) {
            double v = 0;
            detail::check(det_info_get_hparam_f64(ctx_, n.c_str(), &v));
            return static_cast<T>(v);
        } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
            int64_t v = 0;
            detail::check(det_info_get_hparam_i64(ctx_, n.c_str(), &v));
            return narrow<T>(name, v);
        } else {
            static_assert(std::is_same_v<T, std::string>, "hparam<T>: T must be a number type or std::string");
            char *s = nullptr;
            detail::check(det_info_get_hparam_str(ctx_, n.c_str(), &s));
            return detail::take_string(s);
        }
    }
    /// As hparam<T>(name), with `fallback` when the hyperparameter is absent (a value of the
    /// wrong type still throws: `det_info_get_hparam_f64_or`, `_i64_or`, `_str_or`).
    template <class T>
    [[nodiscard]] T hparam(std::string_view name, T fallback) const {
        detail::CStr n(name, "name");
        if constexpr (std::is_floating_point_v<T>) {
            double v = 0;
            detail::check(det_info_get_hparam_f64_or(ctx_, n.c_str(), static_cast<double>(fallback), &v));
            return static_cast<T>(v);
        } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
            int64_t v = 0;
            detail::check(det_info_get_hparam_i64_or(ctx_, n.c_str(), static_cast<int64_t>(fallback), &v));
            return narrow<T>(name, v);
        } else {
            static_assert(std::is_same_v<T, std::string>, "hparam<T>: T must be a number type or std::string");
            char *s = nullptr;
            detail::check(det_info_get_hparam_str_or(ctx_, n.c_str(), fallback.c_str(), &s));
            return detail::take_string(s);
        }
    }
    [[nodiscard]] std::string hparam(std::string_view name, const char *fallback) const {
        return hparam<std::string>(name, std::string(fallback));
    }
    /// Off-cluster run name (std::nullopt on-cluster).
    [[nodiscard]] std::optional<std::string> run_name() const {
        char *s = nullptr;
        detail::check(det_info_run_name(ctx_, &s));
        return detail::take_optional_string(s);
    }
    /// Off-cluster run folder (std::nullopt on-cluster).
    [[nodiscard]] std::optional<std::filesystem::path> run_dir() const {
        char *s = nullptr;
        detail::check(det_info_run_dir(ctx_, &s));
        auto v = detail::take_optional_string(s);
        if (!v) return std::nullopt;
        return std::filesystem::path(*v);
    }

    /* What only a Determined cluster knows (Python's ClusterInfo and ClusterInfo.trial). Off-cluster
     * the single values are std::nullopt and the lists empty; the trial's values are std::nullopt
     * too in on-cluster tasks that are not trials (task_type() != "TRIAL"). Other failures throw. */

    /// `info.trial.trial_id` (the run id of run metadata is the same number).
    [[nodiscard]] std::optional<int64_t> trial_id() const { return value<int64_t>(det_info_trial_id); }
    /// `info.trial.experiment_id`.
    [[nodiscard]] std::optional<int64_t> experiment_id() const { return value<int64_t>(det_info_experiment_id); }
    /// `info.trial.trial_seed`.
    [[nodiscard]] std::optional<uint32_t> trial_seed() const { return value<uint32_t>(det_info_trial_seed); }
    /// The trial's run id: 1 for its first allocation, +1 for every restart.
    [[nodiscard]] std::optional<int64_t> trial_run_id() const { return value<int64_t>(det_info_trial_run_id); }
    /// The experiment config as JSON (its shape changes between Determined versions; prefer
    /// hparams and user_data_json()).
    [[nodiscard]] std::optional<std::string> experiment_config_json() const {
        return text(det_info_experiment_config_json);
    }
    /// `info.user_data`: the experiment config's `data` field as JSON (`{}` when absent, and for
    /// tasks that are not trials).
    [[nodiscard]] std::optional<std::string> user_data_json() const { return text(det_info_user_data_json); }
    /// `"TRIAL"`, `"NOTEBOOK"`, `"SHELL"`, `"COMMAND"`, `"TENSORBOARD"`, `"CHECKPOINT_GC"`, ...
    [[nodiscard]] std::optional<std::string> task_type() const { return text(det_info_task_type); }
    [[nodiscard]] std::optional<std::string> task_id() const { return text(det_info_task_id); }
    /// Changes with every restart of the trial.
    [[nodiscard]] std::optional<std::string> allocation_id() const { return text(det_info_allocation_id); }
    [[nodiscard]] std::optional<std::string> cluster_id() const { return text(det_info_cluster_id); }
    /// The agent (node) this container runs on.
    [[nodiscard]] std::optional<std::string> agent_id() const { return text(det_info_agent_id); }
    /// The master's URL, canonical (`scheme://host:port[/prefix]`).
    [[nodiscard]] std::optional<std::string> master_url() const { return text(det_info_master_url); }
    /// `info.trial._debug`: the experiment config's `debug` flag.
    [[nodiscard]] std::optional<bool> trial_debug() const { return value<bool>(det_info_trial_debug); }
    /// `info.trial._inter_node_network_interface`: the interface the experiment config names for
    /// traffic between nodes (std::nullopt when none is set).
    [[nodiscard]] std::optional<std::string> inter_node_network_interface() const {
        char *s = nullptr;
        if (unknown(det_info_inter_node_network_interface(ctx_, &s))) return std::nullopt;
        return detail::take_optional_string(s);
    }
    /// This container's rank among the allocation's containers (0 for tasks that are not trials).
    [[nodiscard]] std::optional<int32_t> container_rank() const { return value<int32_t>(det_info_container_rank); }
    /// The addresses of the allocation's containers in container-rank order; the first is the
    /// chief's (`DistributedConfig::chief_ip`).
    [[nodiscard]] std::vector<std::string> container_addrs() const {
        std::vector<std::string> out;
        size_t n = count(det_info_container_count);
        for (size_t i = 0; i < n; i++) out.push_back(item_text(det_info_container_addr, i));
        return out;
    }
    /// The slot (GPU) count of each container, in container-rank order.
    [[nodiscard]] std::vector<int32_t> container_slot_counts() const {
        std::vector<int32_t> out;
        size_t n = count(det_info_container_count);
        for (size_t i = 0; i < n; i++) out.push_back(item_value(det_info_container_slot_count, i));
        return out;
    }
    /// The slot ids assigned to this container.
    [[nodiscard]] std::vector<int32_t> slot_ids() const {
        std::vector<int32_t> out;
        size_t n = count(det_info_slot_id_count);
        for (size_t i = 0; i < n; i++) out.push_back(item_value(det_info_slot_id, i));
        return out;
    }
    /// The UUIDs of this container's GPUs (empty without `resources.json`).
    [[nodiscard]] std::vector<std::string> gpu_uuids() const {
        std::vector<std::string> out;
        size_t n = count(det_info_gpu_uuid_count);
        for (size_t i = 0; i < n; i++) out.push_back(item_text(det_info_gpu_uuid, i));
        return out;
    }

private:
    /// An integer hyperparameter as T, or DET_ERR_INVALID_ARGUMENT when it does not fit.
    template <class T>
    static T narrow(std::string_view name, int64_t v) {
        if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
            (v > 0 && static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<T>::max())))
            throw Error(DET_ERR_INVALID_ARGUMENT,
                        "det::Info::hparam: \"" + std::string(name) + "\" = " + std::to_string(v) + " is out of range");
        return static_cast<T>(v);
    }
    /// DET_ERR_UNSUPPORTED (known only on-cluster / for trials) as std::nullopt; others throw.
    static bool unknown(det_status st) {
        if (st == DET_ERR_UNSUPPORTED) return true;
        detail::check(st);
        return false;
    }
    template <class T>
    std::optional<T> value(det_status (*fn)(const det_context *, T *)) const {
        T v{};
        if (unknown(fn(ctx_, &v))) return std::nullopt;
        return v;
    }
    std::optional<std::string> text(det_status (*fn)(const det_context *, char **)) const {
        char *s = nullptr;
        if (unknown(fn(ctx_, &s))) return std::nullopt;
        return detail::take_string(s);
    }
    size_t count(det_status (*fn)(const det_context *, size_t *)) const {
        size_t n = 0;
        if (unknown(fn(ctx_, &n))) return 0;
        return n;
    }
    std::string item_text(det_status (*fn)(const det_context *, size_t, char **), size_t i) const {
        char *s = nullptr;
        detail::check(fn(ctx_, i, &s));
        return detail::take_string(s);
    }
    int32_t item_value(det_status (*fn)(const det_context *, size_t, int32_t *), size_t i) const {
        int32_t v = 0;
        detail::check(fn(ctx_, i, &v));
        return v;
    }
    det_context *ctx_;
};

/// `determined.get_cluster_info()` without a context: the task container's info files
/// (`info_dir`, else `$DET_CLUSTER_INFO_DIR`, else `/run/determined/info`) as one JSON object
/// (`det_cluster_info_json`), or std::nullopt off-cluster. The object holds the session token.
[[nodiscard]] inline std::optional<std::string> cluster_info_json(
    const std::optional<std::filesystem::path> &info_dir = std::nullopt) {
    std::optional<detail::CStr> dir;
    if (info_dir) dir.emplace(info_dir->string(), "info_dir");
    char *s = nullptr;
    detail::check(det_cluster_info_json(dir ? dir->c_str() : nullptr, &s));
    return detail::take_optional_string(s);
}

/// `core_context.experimental` (`det_experimental_*`): link the checkpoint (or model version)
/// this trial uses to it, so its metrics are listed with that checkpoint. Off-cluster nothing is
/// recorded (a log line says so).
class Experimental {
public:
    explicit Experimental(det_context *ctx) noexcept : ctx_(ctx) {}

    void report_task_using_checkpoint(std::string_view checkpoint_uuid) {
        detail::CStr u(checkpoint_uuid, "checkpoint_uuid");
        detail::check(det_experimental_report_task_using_checkpoint(ctx_, u.c_str()));
    }
    /// The model version's checkpoint, the model's id and the version's number.
    void report_task_using_model_version(std::string_view checkpoint_uuid, int32_t model_id, int32_t model_version) {
        detail::CStr u(checkpoint_uuid, "checkpoint_uuid");
        detail::check(det_experimental_report_task_using_model_version(ctx_, u.c_str(), model_id, model_version));
    }

private:
    det_context *ctx_;
};

/* ---- the context ------------------------------------------------------------------------------- */

/// A Core API context (`det_core_init` … `det_core_close`). Move-only; the destructor closes it.
/// Thread-safe like the C handle: any thread may use it (views included) while it lives.
///
/// The destructor closes the context; a failure (e.g. reports that could not be delivered) is
/// written to stderr, since a destructor cannot throw. Call close() to get it as an exception.
class Context : public detail::Handle<det_context, detail::Closer<det_context, det_core_close, detail::kContext>> {
public:
    /// `core.init(...)`: on-cluster under a Determined master, else off-cluster.
    explicit Context(const Options &options = Options()) {
        det_context *ctx = nullptr;
        options.with_c_options([&ctx](const det_init_options &o) { detail::check(det_core_init(&o, &ctx)); });
        reset(ctx);
    }
    /// Take ownership of a context made with the C API.
    static Context adopt(det_context *ctx) noexcept { return Context(ctx); }

    /// Flush reports, join threads, release everything; throws det::Error on failure. The
    /// context is closed afterwards either way.
    void close() { detail::check(det_core_close(release())); }

    [[nodiscard]] Checkpoint checkpoint() const { return Checkpoint(live()); }
    [[nodiscard]] Train train() const { return Train(live()); }
    [[nodiscard]] Preempt preempt() const { return Preempt(live()); }
    [[nodiscard]] Searcher searcher() const { return Searcher(live()); }
    [[nodiscard]] Distributed distributed() const { return Distributed(live()); }
    [[nodiscard]] Info info() const { return Info(live()); }
    [[nodiscard]] Profiler profiler() const { return Profiler(live()); }
    [[nodiscard]] Experimental experimental() const { return Experimental(live()); }

    /// `alert(title, description, level)`: fire the experiment's custom webhooks; returns once
    /// the master accepted it. Off-cluster the alert is logged at its level (Python raises
    /// there); on-cluster tasks that are not trials get `DET_ERR_UNSUPPORTED`.
    void alert(std::string_view title = {}, std::string_view description = {}, AlertLevel level = AlertLevel::Info) {
        detail::CStr t(title, "title"), d(description, "description");
        detail::check(det_core_alert(live(), t.c_str(), d.c_str(), static_cast<int32_t>(level)));
    }

private:
    explicit Context(det_context *ctx) noexcept : Handle(ctx) {}
    det_context *live() const { return Handle::live("det::Context: used after close(), release() or a move"); }
};

}  // namespace det

#endif /* DETCORE_HPP */
