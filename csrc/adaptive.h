// Draft-length control for adaptive speculation (`Speculator.mtp(n_max="auto")`).
//
// Before every draft, each speculating sequence gets the draft length k in {0, 1, ..., n_max}
// that maximises its expected tokens per second of engine time, from online estimates of
//   * the acceptance of each draft position, recent-weighted, per sequence (AcceptanceEstimate);
//   * the time of a step of r rows (the target's decode, sampling, verification), of the draft
//     context following it, and of a drafting pass of d steps, measured on this machine, for this
//     model (StepCosts, FollowedSteps, DraftCosts; each row count is tried a few times before its
//     cost is trusted, and costs are compared as measured in the same spell of the machine).
// k = 0 is plain decoding; while there, a sequence still drafts now and then (a probe, at growing
// intervals) so that it notices when drafting starts to pay. A probe is a *shadow* draft: drafted
// but not verified -- the tokens plain decoding produces next are compared with it, which
// measures the acceptance without paying for verification rows. A drafting sequence goes to
// k = 0 only when plain decoding wins by a margin: its acceptance estimate follows recent
// verifications, and a few rejections in a row must not stop a draft that pays on average.
//
// llama.cpp's MTP drafter runs every drafting pass to the speculator's depth (its n_max) and only
// then truncates each sequence's draft, so the draft *depth* is chosen separately, between
// requests (best_draft_depth), and the per-step choice decides how many drafted tokens are
// verified. Everything here is a pure function of its inputs: unit-tested through the binding.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace llama_mtp {

// Expected tokens a verification step yields with a draft of length k, when draft position i is
// accepted with probability p[i-1] given that the ones before it were: 1 + sum_{i<=k} prod_{j<=i} p_j.
double expected_tokens(const std::vector<double>& p, int k);

// The k in [0, n_max] that maximises expected_tokens(p, k) / seconds(k), where a step with k
// drafted tokens costs step_seconds(other_rows + k + 1) plus draft_seconds when k > 0.
int best_draft_length(const std::vector<double>& p, const std::function<double(int rows)>& step_seconds,
                      double draft_seconds, int other_rows, int n_max);

// The expected tokens per second of that step with k drafted tokens (0 when its cost is unknown).
double draft_rate(const std::vector<double>& p, const std::function<double(int rows)>& step_seconds,
                  double draft_seconds, int other_rows, int k);

// Tokens per second of plain decoding ([0]: plain_step_seconds a step, with no drafting work at
// all) and of the best k at every drafting depth d in [1, max_depth] ([d]: a pass costs
// draft_seconds(d), a step of r rows that the draft context follows step_seconds(r)); 0 where a
// cost is unknown.
std::vector<double> draft_depth_rates(const std::vector<double>& p, const std::function<double(int rows)>& step_seconds,
                                      const std::function<double(int depth)>& draft_seconds,
                                      double plain_step_seconds, int max_depth);
// The depth to use from those rates, 0 when plain decoding wins (the deepest while plain
// decoding's cost is unknown: drafting is what must be measured then).
int best_draft_depth(const std::vector<double>& rates);

// Acceptance of each draft position, conditional on the earlier ones being accepted, as an
// exponentially weighted average over the recent verification steps. Until a position was tested
// about 1/weight times the prior counts as one test and the average is a plain mean: a fresh
// engine's first request replaces the prior with what it sees, rather than moving from it by
// `weight` a step (which would take ~3/weight tests).
class AcceptanceEstimate {
public:
    static constexpr double kPrior = 0.8;  // what a position is thought to accept before any test

    explicit AcceptanceEstimate(int n_max = 0, double prior = kPrior, double weight = 0.25);
    // A verification of a draft of `drafted` tokens accepted the first `accepted` of them.
    void update(int drafted, int accepted);
    const std::vector<double>& p() const { return p_; }
    // Starts a position from a known estimate (weighted as recent tests from then on).
    void set(int position, double p);

private:
    std::vector<double> p_;
    std::vector<int> tested_;  // [position]: tests seen (counted up to 1/weight)
    double weight_;
};

// Measured seconds of a unit of work by its size (the rows of a step, the steps of a drafting
// pass): per size, the mean of its recent measurements without the slowest quarter. Work that
// other processes interrupt only ever takes longer, so the slowest runs say little about the work
// itself; the rest is averaged because the work's own cost varies (a rejected draft is rolled
// back, an accepted one is not). Measurements older than kStale ticks (engine steps) are stale: a
// size not run for that long is measured again before its cost is trusted (and its old
// measurements serve only until then).
//
// The machine's speed drifts (other processes, other tenants of the host), so two sizes measured
// at different times are not comparable: one measured in a slow spell would look dear for as long
// as it is not run again -- and it is not, because it looks dear. So the table compares sizes in
// the same spell: whenever two sizes are measured within kPairTicks of each other, the ratio of
// their costs is kept, and the cost of a size is that ratio times what the size in use now (the
// reference: the one measured most in the last kRecentTicks) costs now. A size never paired with
// the reference falls back to its own measurements.
class CostTable {
public:
    static constexpr size_t kWindow = 16;       // recent measurements (and ratios) kept per size (pair)
    static constexpr uint64_t kStale = 1024;    // ticks after which a measurement is forgotten
    static constexpr uint64_t kPairTicks = 4;   // measurements this close are from the same spell
    static constexpr uint64_t kRecentTicks = 32;  // what the reference costs now: its measurements since
    static constexpr int kReferenceSamples = 3;   // the fewest recent measurements of a reference

    void add(int size, double seconds);
    void tick() { ++now_; }
    int samples(int size) const;  // fresh measurements of this size
    bool known(int size) const;   // measured at all
    uint64_t age(int size) const;  // ticks since its last measurement (UINT64_MAX: never)
    double measured(int size) const;  // from its own fresh measurements, else the old; 0 if none
    // The size in use now: the one measured most in the last kRecentTicks (at least
    // kReferenceSamples times; ties go to the one measured last), -1 when none is.
    int reference() const;
    // The median ratio of `size`'s cost to `ref`'s over the pairs measured in the same spell; 0
    // when there are none.
    double ratio(int size, int ref) const;
    // The cost of `size` now: ratio(size, reference()) times the reference's recent cost, else
    // measured(size); 0 when the size was never measured.
    double level(int size) const;

protected:
    struct Sample {
        double seconds;
        uint64_t at;
    };
    struct Recent {
        std::vector<Sample> samples;  // ring of the last kWindow
        size_t next = 0;
        Sample last{0.0, 0};
    };
    struct Ratios {
        std::vector<double> values;  // ring of the last kWindow: seconds(a) / seconds(b), a < b
        size_t next = 0;
    };
    double recent_cost(int size) const;  // trimmed mean of its measurements in the last kRecentTicks
    std::vector<Recent> sizes_;  // [size]
    std::vector<std::vector<Ratios>> pairs_;  // [a][b], a < b
    uint64_t now_ = 0;
};

// Seconds of an engine step by its number of rows; a row count never seen is estimated from the
// straight line through the others.
class StepCosts : public CostTable {
public:
    double seconds(int rows) const;  // 0 while nothing was measured
};

// Seconds of a drafting pass by its depth (steps): the depth in use as measured; another depth
// scaled from it per step (a pass is that many steps of the draft head, and the depth in use was
// measured in this spell of the machine, another depth perhaps not).
class DraftCosts : public CostTable {
public:
    double seconds(int depth) const;
};

// What a step costs a speculating sequence: the step (StepCosts of every generation step, the
// draft context's following left out) plus the following of its rows (timed apart). Kept as two
// parts because steps are timed all the time -- also while requests are served with no MTP work --
// so the sum keeps to the machine's present pace even then; the following is a small part of it.
class FollowedSteps {
public:
    FollowedSteps(const StepCosts& steps, const StepCosts& follow) : steps_(&steps), follow_(&follow) {}
    double seconds(int rows) const;  // 0 while the step was never measured
    // Followed steps of this many rows measured lately (what the controller trusts).
    int samples(int rows) const { return follow_->samples(rows); }

private:
    const StepCosts* steps_;
    const StepCosts* follow_;
};

// The per-sequence state of the controller: acceptance, and when to probe while at k = 0.
class DraftController {
public:
    // What to do in the next step: draft `length` tokens and verify them, or (probe) draft but
    // only compare the draft with the tokens plain decoding produces next.
    struct Choice {
        int length = 0;
        bool probe = false;
    };

    // Row counts whose cost has fewer measurements than this are tried before being compared.
    static constexpr int kTrustedSamples = 6;
    // How much faster plain decoding must look before a drafting sequence stops drafting.
    static constexpr double kLeaveMargin = 0.10;
    // The weight of each verification in the sequence's acceptance estimate: about the last ten
    // count, so that the estimate follows text whose agreement changes within a few tokens while
    // the chance rejections of a draft that pays seldom pull it below where drafting stops.
    static constexpr double kAcceptanceWeight = 0.1;

    explicit DraftController(int n_max = 0);
    // `steps`: the cost of steps the draft context follows (what this sequence's steps are).
    Choice choose(const FollowedSteps& steps, const DraftCosts& drafts, int depth, int other_rows);
    void verified(int drafted, int accepted) { acceptance_.update(drafted, accepted); }

    // Shadow probes: the draft to compare with the coming tokens, and each token as it comes.
    void start_probe(std::vector<int32_t> draft);
    bool probing() const { return !probe_draft_.empty(); }
    // Returns the probe's outcome (drafted, accepted) once it is known, else (0, 0).
    std::pair<int, int> observe(int32_t token);
    void drop_probe() { probe_draft_.clear(); }
    // Starts from another estimate (the engine's, over all sequences).
    void seed(const AcceptanceEstimate& from);
    const AcceptanceEstimate& acceptance() const { return acceptance_; }

private:
    AcceptanceEstimate acceptance_;
    int n_max_;
    int last_length_ = 1;     // the draft length verified at the last step (a new sequence drafts)
    std::vector<int> explored_;  // [k]: steps spent trying k to measure its cost
    int plain_steps_ = 0;     // consecutive steps at k = 0
    int probe_interval_ = 4;  // doubles after every probe that does not bring drafting back
    std::vector<int32_t> probe_draft_;
    size_t probe_matched_ = 0;
};

}  // namespace llama_mtp
