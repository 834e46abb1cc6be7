/*
 * A real (small) training program on detcore: a two-layer MLP learns to separate two
 * interleaved spirals with SGD + momentum.
 *
 *   - reads its hyperparameters through detcore (DET_HPARAMS or the det_init_options field),
 *   - resumes from the latest checkpoint of its run (model, optimizer and step),
 *   - reports training metrics every `report_every` steps (typed fast path, no JSON),
 *   - validates and reports validation metrics every `validate_every` steps,
 *   - checkpoints model + optimizer state every `checkpoint_every` steps,
 *   - checks det_should_preempt() every step; on preemption (SIGTERM, SIGUSR1, DET_HALT_FILE,
 *     the job's end time) it saves a checkpoint and exits 0.
 *
 * Training is deterministic: the minibatch of step s depends only on (seed, s), so a run that
 * is interrupted and resumed ends with exactly the same weights as one that is not. The final
 * line prints a checksum of the weights to show it.
 *
 * Usage: train   (configure with DET_HPARAMS='{"steps": 600, ...}', DET_RUN_NAME,
 *                 DETCORE_CHECKPOINT_STORAGE, DET_HALT_FILE, ...)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* DET_CHECK(call) prints file:line, the call, the status name and detcore's message when the call
 * fails, then runs DET_CHECK_FAIL: here, exit with status 2 (the default returns the status). */
#define DET_CHECK_FAIL(status) exit(2)
#include <detcore.h>

#include <math.h>
#include <string.h>

/* ---- hyperparameters ------------------------------------------------------------------------ */

typedef struct {
    int64_t steps, hidden, batch_size, report_every, validate_every, checkpoint_every, seed;
    double learning_rate, momentum;
} hparams;

/* Absent: the default; present with the wrong type (a string, a float for an integer): an error. */
static int64_t hp_i64(det_context *ctx, const char *name, int64_t dflt) {
    int64_t v;
    DET_CHECK(det_info_get_hparam_i64_or(ctx, name, dflt, &v));
    return v;
}

static double hp_f64(det_context *ctx, const char *name, double dflt) {
    double v;
    DET_CHECK(det_info_get_hparam_f64_or(ctx, name, dflt, &v));
    return v;
}

/* ---- deterministic randomness ---------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double uniform(uint64_t *s) { return (double)(splitmix(s) >> 11) * (1.0 / 9007199254740992.0); }
static double normal(uint64_t *s) {
    double u = uniform(s), v = uniform(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* A point of the two-spirals problem: class 0 or 1, with noise. */
static void spiral_point(uint64_t *rng, float x[2], int *label) {
    int c = (int)(splitmix(rng) & 1);
    double t = 0.25 + 1.25 * uniform(rng); /* angle in turns */
    double r = t / 1.5;
    double a = 6.283185307179586 * t + (c ? 3.141592653589793 : 0.0);
    x[0] = (float)(r * cos(a) + 0.02 * normal(rng));
    x[1] = (float)(r * sin(a) + 0.02 * normal(rng));
    *label = c;
}

/* ---- the model: 2 -> H (tanh) -> 2 (softmax) --------------------------------------------------- */

typedef struct {
    int64_t h;
    float *w1, *b1, *w2, *b2; /* w1[h][2], b1[h], w2[2][h], b2[2] */
    size_t n;                 /* number of parameters */
    float *params;            /* all of the above, contiguous */
} model;

static void model_init(model *m, int64_t h, uint64_t seed) {
    m->h = h;
    m->n = (size_t)(2 * h + h + 2 * h + 2);
    m->params = calloc(m->n, sizeof(float));
    m->w1 = m->params;
    m->b1 = m->w1 + 2 * h;
    m->w2 = m->b1 + h;
    m->b2 = m->w2 + 2 * h;
    uint64_t rng = seed ^ 0xabcdef;
    for (int64_t i = 0; i < 2 * h; i++) m->w1[i] = (float)(normal(&rng) * 2.0);
    for (int64_t i = 0; i < h; i++) m->b1[i] = (float)(normal(&rng) * 0.5);
    for (int64_t i = 0; i < 2 * h; i++) m->w2[i] = (float)(normal(&rng) / sqrt((double)h));
}

/* Forward one example; returns the loss and writes class probabilities, hidden activations. */
static double forward(const model *m, const float x[2], int label, float *hid, float prob[2]) {
    for (int64_t j = 0; j < m->h; j++) hid[j] = tanhf(m->w1[2 * j] * x[0] + m->w1[2 * j + 1] * x[1] + m->b1[j]);
    float z[2];
    for (int k = 0; k < 2; k++) {
        float s = m->b2[k];
        for (int64_t j = 0; j < m->h; j++) s += m->w2[k * m->h + j] * hid[j];
        z[k] = s;
    }
    float mx = z[0] > z[1] ? z[0] : z[1];
    float e0 = expf(z[0] - mx), e1 = expf(z[1] - mx);
    prob[0] = e0 / (e0 + e1);
    prob[1] = e1 / (e0 + e1);
    return -log((double)prob[label] + 1e-12);
}

/* One SGD+momentum step on a minibatch; returns (loss, accuracy). */
static void train_step(model *m, float *velocity, const hparams *hp, int64_t step, double *loss_out, double *acc_out) {
    float *grad = calloc(m->n, sizeof(float));
    float *hid = malloc((size_t)m->h * sizeof(float));
    float *dh = malloc((size_t)m->h * sizeof(float));
    uint64_t rng = (uint64_t)hp->seed * 1000003ULL + (uint64_t)step;
    double loss = 0;
    int correct = 0;
    float *gw1 = grad, *gb1 = gw1 + 2 * m->h, *gw2 = gb1 + m->h, *gb2 = gw2 + 2 * m->h;
    for (int64_t i = 0; i < hp->batch_size; i++) {
        float x[2], p[2];
        int y;
        spiral_point(&rng, x, &y);
        loss += forward(m, x, y, hid, p);
        correct += (p[1] > p[0]) == (y == 1);
        float dz[2] = {p[0] - (y == 0), p[1] - (y == 1)};
        for (int k = 0; k < 2; k++) {
            gb2[k] += dz[k];
            for (int64_t j = 0; j < m->h; j++) gw2[k * m->h + j] += dz[k] * hid[j];
        }
        for (int64_t j = 0; j < m->h; j++) {
            float d = (dz[0] * m->w2[j] + dz[1] * m->w2[m->h + j]) * (1.0f - hid[j] * hid[j]);
            dh[j] = d;
            gb1[j] += d;
            gw1[2 * j] += d * x[0];
            gw1[2 * j + 1] += d * x[1];
        }
    }
    float scale = 1.0f / (float)hp->batch_size;
    for (size_t i = 0; i < m->n; i++) {
        velocity[i] = (float)hp->momentum * velocity[i] - (float)hp->learning_rate * grad[i] * scale;
        m->params[i] += velocity[i];
    }
    *loss_out = loss / (double)hp->batch_size;
    *acc_out = (double)correct / (double)hp->batch_size;
    free(grad);
    free(hid);
    free(dh);
}

static void validate(const model *m, const hparams *hp, double *loss_out, double *acc_out) {
    float *hid = malloc((size_t)m->h * sizeof(float));
    uint64_t rng = (uint64_t)hp->seed * 7919ULL + 0x5eed;
    double loss = 0;
    int correct = 0, n = 2000;
    for (int i = 0; i < n; i++) {
        float x[2], p[2];
        int y;
        spiral_point(&rng, x, &y);
        loss += forward(m, x, y, hid, p);
        correct += (p[1] > p[0]) == (y == 1);
    }
    free(hid);
    *loss_out = loss / n;
    *acc_out = (double)correct / n;
}

static uint64_t checksum(const model *m) {
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *b = (const unsigned char *)m->params;
    for (size_t i = 0; i < m->n * sizeof(float); i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* ---- checkpoints ------------------------------------------------------------------------------ */

typedef struct {
    char magic[8];
    int64_t hidden, step;
} state_header;

static int write_file(const char *dir, const char *name, const void *a, size_t na, const void *b, size_t nb) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(a, 1, na, f) == na && (nb == 0 || fwrite(b, 1, nb, f) == nb);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int read_file(const char *dir, const char *name, void *a, size_t na, void *b, size_t nb) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int ok = fread(a, 1, na, f) == na && (nb == 0 || fread(b, 1, nb, f) == nb);
    fclose(f);
    return ok ? 0 : -1;
}

static void save(det_context *ctx, const model *m, const float *velocity, int64_t step, const char *why) {
    char extra[64]; /* metadata besides steps_completed (optional: NULL for none) */
    snprintf(extra, sizeof extra, "{\"reason\": \"%s\"}", why);
    det_ckpt_store *store;
    DET_CHECK(det_ckpt_store_path_begin_steps(ctx, step, extra, false, &store));
    const char *dir; /* valid until the scope ends */
    DET_CHECK(det_ckpt_store_path(store, &dir));
    state_header h = {"SPIRAL1", m->h, step};
    if (write_file(dir, "model.bin", &h, sizeof h, m->params, m->n * sizeof(float)) != 0 ||
        write_file(dir, "optimizer.bin", velocity, m->n * sizeof(float), NULL, 0) != 0) {
        fprintf(stderr, "train: cannot write checkpoint files into %s\n", dir);
        det_ckpt_store_path_abort(store); /* nothing half-written becomes a checkpoint */
        exit(2);
    }
    char id[DET_STORAGE_ID_LEN];
    DET_CHECK(det_ckpt_store_path_end(store, id));
    printf("checkpoint %s at step %lld (%s)\n", id, (long long)step, why);
    fflush(stdout);
}

/* Returns the step to continue from. */
static int64_t restore(det_context *ctx, model *m, float *velocity) {
    char *latest = NULL; /* ours: freed with det_string_free */
    DET_CHECK(det_info_latest_checkpoint(ctx, &latest));
    if (!latest) {
        printf("starting fresh\n");
        return 0;
    }
    det_ckpt_restore *r;
    DET_CHECK(det_ckpt_restore_path_begin(ctx, latest, DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD, NULL, NULL, &r));
    /* The folder (and `dir`) exist until det_ckpt_restore_path_end: read every file before it. A
     * program that reads the checkpoint later (while building its model or data loaders) keeps
     * the scope open until then. */
    const char *dir;
    DET_CHECK(det_ckpt_restore_path(r, &dir));
    state_header h;
    if (read_file(dir, "model.bin", &h, sizeof h, m->params, m->n * sizeof(float)) != 0 ||
        read_file(dir, "optimizer.bin", velocity, m->n * sizeof(float), NULL, 0) != 0 ||
        memcmp(h.magic, "SPIRAL1", 8) != 0 || h.hidden != m->h) {
        fprintf(stderr, "train: checkpoint %s does not match this model\n", latest);
        exit(2);
    }
    DET_CHECK(det_ckpt_restore_path_end(r));
    printf("resumed from checkpoint %s at step %lld\n", latest, (long long)h.step);
    det_string_free(latest);
    return h.step;
}

/* ---- main ---------------------------------------------------------------------------------------- */

int main(void) {
    det_init_options opts;
    DET_CHECK(det_init_options_default(&opts, sizeof opts));
    det_context *ctx;
    DET_CHECK(det_core_init(&opts, &ctx));

    hparams hp = {
        .steps = hp_i64(ctx, "steps", 2000),
        .hidden = hp_i64(ctx, "hidden", 64),
        .batch_size = hp_i64(ctx, "batch_size", 128),
        .report_every = hp_i64(ctx, "report_every", 10),
        .validate_every = hp_i64(ctx, "validate_every", 100),
        .checkpoint_every = hp_i64(ctx, "checkpoint_every", 100),
        .seed = hp_i64(ctx, "seed", 1),
        .learning_rate = hp_f64(ctx, "learning_rate", 0.1),
        .momentum = hp_f64(ctx, "momentum", 0.9),
    };
    if (hp.steps < 1 || hp.hidden < 1 || hp.batch_size < 1 || hp.report_every < 1 || hp.validate_every < 1 ||
        hp.checkpoint_every < 1) {
        fprintf(stderr, "train: hyperparameters must be positive\n");
        return 2;
    }

    model m;
    model_init(&m, hp.hidden, (uint64_t)hp.seed);
    float *velocity = calloc(m.n, sizeof(float));
    int64_t step = restore(ctx, &m, velocity);
    const int64_t start = step;

    static const char *names[] = {"loss", "accuracy"};
    static const char *validation_names[] = {"validation_loss", "accuracy"};
    double sum_loss = 0, sum_acc = 0;
    int64_t since = 0;
    int preempted = 0;
    while (step < hp.steps) {
        double loss, acc;
        train_step(&m, velocity, &hp, step, &loss, &acc);
        step++;
        sum_loss += loss;
        sum_acc += acc;
        since++;
        if (step % hp.report_every == 0) {
            double values[2] = {sum_loss / (double)since, sum_acc / (double)since};
            DET_CHECK(det_train_report_scalars(ctx, "training", step, names, values, 2));
            sum_loss = sum_acc = 0;
            since = 0;
        }
        if (step % hp.validate_every == 0 || step == hp.steps) {
            double v[2];
            validate(&m, &hp, &v[0], &v[1]);
            double vl = v[0], va = v[1];
            /* Typed: no JSON to format, and a NaN loss is reported as such. */
            DET_CHECK(det_train_report_scalars(ctx, "validation", step, validation_names, v, 2));
            DET_CHECK(det_train_report_progress(ctx, (double)step / (double)hp.steps));
            printf("step %lld: validation loss %.4f accuracy %.4f\n", (long long)step, vl, va);
            fflush(stdout);
        }
        if (step % hp.checkpoint_every == 0 && step < hp.steps) save(ctx, &m, velocity, step, "periodic");
        bool stop;
        DET_CHECK(det_should_preempt(ctx, &stop));
        if (stop && step < hp.steps) {
            printf("preempted at step %lld: saving and exiting\n", (long long)step);
            save(ctx, &m, velocity, step, "preempted");
            preempted = 1;
            break;
        }
    }
    if (!preempted) {
        if (step > start) save(ctx, &m, velocity, step, "final");
        printf("training finished at step %lld; weights checksum %016llx\n", (long long)step,
               (unsigned long long)checksum(&m));
    }
    free(velocity);
    free(m.params);
    DET_CHECK(det_core_close(ctx));
    return 0;
}
