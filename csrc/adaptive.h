// Draft-length control for adaptive speculation (`Speculator.mtp(n_max="auto")`).
//
// Before every draft, each speculating sequence gets the draft length k in {0, 1, ..., n_max}
// that maximises its expected tokens per second of engine time, from online estimates of
//   * the acceptance of each draft position, recent-weighted, per sequence (AcceptanceEstimate);
//   * the time of a batch of r rows (the target's decode plus the draft context following it) and
//     of a drafting pass of d steps, measured on this machine, for this model (StepCosts,
//     DraftCosts).
// k = 0 is plain decoding; while there, a sequence still drafts now and then (a probe, at growing
// intervals) so that it notices when drafting starts to pay. A probe is a *shadow* draft: drafted
// but not verified -- the tokens plain decoding produces next are compared with it, which
// measures the acceptance without paying for verification rows.
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

// Tokens per second of the best k for every drafting depth d in [1, max_depth] (a pass costs
// draft_seconds(d)), and of plain decoding; returns the depth to use, 0 when plain decoding wins.
int best_draft_depth(const std::vector<double>& p, const std::function<double(int rows)>& step_seconds,
                     const std::function<double(int depth)>& draft_seconds, int max_depth);

// Acceptance of each draft position, conditional on the earlier ones being accepted, as an
// exponentially weighted average over the recent verification steps.
class AcceptanceEstimate {
public:
    explicit AcceptanceEstimate(int n_max = 0, double prior = 0.8, double weight = 0.25);
    // A verification of a draft of `drafted` tokens accepted the first `accepted` of them.
    void update(int drafted, int accepted);
    const std::vector<double>& p() const { return p_; }
    void set(int position, double p) { p_[static_cast<size_t>(position)] = p; }

private:
    std::vector<double> p_;
    double weight_;
};

// Seconds of an engine step by its number of rows: an exponentially weighted average per row
// count; a row count never seen is estimated from the straight line through the others.
class StepCosts {
public:
    explicit StepCosts(double weight = 0.2) : weight_(weight) {}
    void add(int rows, double seconds);
    bool known(int rows) const;
    double seconds(int rows) const;  // 0 while nothing was measured

private:
    double weight_;
    std::vector<double> seconds_;  // [rows]; 0: not seen
};

// Seconds of a drafting pass by its depth (steps); an unseen depth is scaled from the others per
// step.
class DraftCosts {
public:
    explicit DraftCosts(double weight = 0.2) : weight_(weight) {}
    void add(int depth, double seconds);
    bool known(int depth) const;
    double seconds(int depth) const;

private:
    double weight_;
    std::vector<double> seconds_;  // [depth]; 0: not seen
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

    explicit DraftController(int n_max = 0);
    Choice choose(const StepCosts& steps, const DraftCosts& drafts, int depth, int other_rows);
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
    bool tried_plain_ = false;
    int plain_steps_ = 0;     // consecutive steps at k = 0
    int probe_interval_ = 4;  // doubles after every probe that does not bring drafting back
    std::vector<int32_t> probe_draft_;
    size_t probe_matched_ = 0;
};

}  // namespace llama_mtp
