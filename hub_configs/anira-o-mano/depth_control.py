"""Depth controllers: who decides how many iterations of the core each token runs.

Every controller answers the same three questions for the recurrent loop, which knows nothing else
about it (a new mechanism is a new controller, not a new branch in the loop):

    plan = controller.plan(prelude_states, token_mask, max_depth)   # once per forward
    plan.active(t)        # which tokens run iteration t (a 0/1 mask, or None for "every token")
    plan.computed(t)      # which tokens the fast path must compute at t (bool, or None for "every token")
    plan.observe(t, h)    # the states after iteration t (the online head reads them here)
    plan.report()         # depths, distributions, expected depth and the per-token compute cost

Masks are float tensors whose values are exactly 0 or 1 in the forward pass; in training they carry a
straight-through gradient (early: Gumbel-softmax; online: the halting probability, or for ACT the cumulative
halting probability), which is how the language-modelling loss reaches the depth decision. Every objective
has that path: the compute loss alone would only ever teach a controller to stop sooner.

`computed(t)` is what lets training skip work: a token must be computed at iteration t when it is active
or when its (zero) mask at t still carries a gradient, since that gradient is "what running iteration t
would have changed" and needs the iteration's output. At inference it is the active tokens.

`token_mask` marks real tokens: padding is never active, so it never keeps the loop running, and its
depth is reported as -1.

`hold_full_depth` (a training-schedule switch on the early and online controllers, set by the study's
`DepthHoldCallback`, never saved): while it is on, training runs every token for `max_depth` iterations and the
controller's decision does not reach the forward, so the language-modelling loss sends it no gradient. The plan
still reports the controller's own distribution and compute cost, so the probe shows what it would do. Why: a
controller trained from the first step decides on a model that has learned nothing yet, and the measured runs
show that decision (often "one iteration for everything") outlasting the rest of training. Evaluation ignores
the switch.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_anira import AniraConfig


@dataclass
class DepthReport:
    """What a plan tells the model after the loop (shapes: B = batch, S = sequence, D = max_depth)."""

    depths: torch.LongTensor  # [B, S] iterations each token ran; -1 at padding
    depth_probs: torch.Tensor  # [B, S, D] probability of depth d at index d - 1
    expected_depth: torch.Tensor  # [B, S] E[d] under depth_probs (differentiable)
    compute_cost: torch.Tensor  # [B, S] the per-token compute loss (E[d] / D unless the objective says otherwise)
    halting_probs: torch.Tensor | None = None  # [B, S, D] online only: lambda at the iterations a token ran, else 0


class AniraRMSNorm(nn.Module):
    """Root-mean-square norm (Llama's), computed in float32 at least for bf16/fp16 safety (float64 stays float64,
    so that float64 reference computations are exact)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = _at_least_float32(hidden_states)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * (hidden_states if hidden_states.dtype == input_dtype else hidden_states.to(input_dtype))


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Decisions are made in float32 under bf16/fp16 (a threshold on a half-precision sigmoid is coarse);
    float64 models keep float64 so that the reference computations stay exact."""
    return x if x.dtype in (torch.float32, torch.float64) else x.to(torch.promote_types(x.dtype, torch.float32))


def _real(token_mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.where(token_mask, values, torch.full_like(values, -1))


class DepthRouter(nn.Linear):
    """Early mode's router output layer (its own class so `_init_weights` can start it at max_depth)."""


class HaltingHead(nn.Linear):
    """Online mode's halting head (its own class so `_init_weights` can start it at "never halt")."""


# ----------------------------------------------------------------------------------------------- fixed


class FixedPlan:
    def __init__(self, token_mask: torch.Tensor, max_depth: int):
        self.token_mask, self.max_depth = token_mask, max_depth

    def active(self, t: int) -> torch.Tensor | None:
        return None  # every token runs every iteration: no masking work at all

    def computed(self, t: int) -> torch.Tensor | None:
        return None

    def any_active(self, t: int) -> bool:
        return t <= self.max_depth

    def observe(self, t: int, hidden: torch.Tensor) -> None:
        pass

    def report(self) -> DepthReport:
        mask, depth = self.token_mask, self.max_depth
        depths = _real(mask, torch.full(mask.shape, depth, dtype=torch.long, device=mask.device))
        depth_probs = F.one_hot(torch.full_like(depths, depth - 1), depth).float()
        expected = torch.full(mask.shape, float(depth), device=mask.device)
        return DepthReport(depths, depth_probs, expected, expected / depth)


class FixedDepth(nn.Module):
    """Every token runs `max_depth` iterations: the plain recurrent-Transformer baseline."""

    data_dependent = False  # the loop's iterations follow the budget alone: it traces (torch.compile, export)

    def __init__(self, config: AniraConfig):
        super().__init__()
        self.max_depth = config.max_depth

    def plan(self, prelude_states: torch.Tensor, token_mask: torch.Tensor, max_depth: int) -> FixedPlan:
        return FixedPlan(token_mask, max_depth)


# ----------------------------------------------------------------------------------------------- early


class EarlyPlan:
    def __init__(self, choice: torch.Tensor, probs: torch.Tensor, token_mask: torch.Tensor, min_depth: int, max_depth: int,
                 next_only: bool = False):
        # choice: [B, S, n] one-hot over depths min_depth..max_depth (straight-through in training).
        # a^t = sum_{d >= t} z_d, i.e. the reversed cumulative sum of the choice.
        self.tail = choice.flip(-1).cumsum(-1).flip(-1) * token_mask.unsqueeze(-1)
        self.choice, self.probs, self.token_mask = choice, probs, token_mask
        self.min_depth, self.max_depth = min_depth, max_depth
        self.depths = min_depth + choice.argmax(-1)
        self._deepest: int | None = None  # read from the depths when first needed (a host sync; see `deepest`)
        self.training = choice.requires_grad
        self.next_only = next_only and self.training  # router_gradient="next"

    @property
    def deepest(self) -> int:
        """The deepest real token's depth. Read only where the loop's length follows it (evaluation,
        router_gradient="next"): the exact estimator's training loop runs max_depth iterations without reading a
        tensor value, so a whole training forward traces as one graph (anira_study.trainer.compile_model)."""
        if self._deepest is None:
            self._deepest = int(self.depths[self.token_mask].max()) if self.token_mask.any() else 0
        return self._deepest

    def active(self, t: int) -> torch.Tensor:
        mask = self.tail[..., max(t - self.min_depth, 0)]
        if self.next_only:  # past the iteration after its depth a token's mask passes no gradient
            mask = torch.where(self.depths + 1 >= t, mask, mask.detach())
        return mask

    def computed(self, t: int) -> torch.Tensor | None:
        if not self.training:
            return self.token_mask & (self.depths >= t)
        if self.next_only:
            return self.token_mask & (self.depths + 1 >= t)
        return None  # the exact estimator reads every iteration's output for every token

    def any_active(self, t: int) -> bool:
        # Training with the exact estimator runs all D iterations: the straight-through gradient reaches every
        # z_d through the masks a^t (t > d_i) of the iterations the token skipped, and stopping at the batch's
        # deepest token would make a token's gradient depend on the other sequences in its batch. With
        # router_gradient="next" every token's gradient needs its iterations up to d_i + 1 only.
        if not self.training:
            return t <= self.deepest
        return t <= (min(self.max_depth, self.deepest + 1) if self.next_only else self.max_depth)

    def observe(self, t: int, hidden: torch.Tensor) -> None:
        pass

    def report(self) -> DepthReport:
        lead = self.probs.new_zeros(*self.probs.shape[:-1], self.min_depth - 1)
        depth_probs = torch.cat([lead, self.probs], dim=-1)
        ladder = torch.arange(1, self.max_depth + 1, device=self.probs.device, dtype=self.probs.dtype)
        expected = (depth_probs * ladder).sum(-1)
        return DepthReport(_real(self.token_mask, self.depths), depth_probs, expected, expected / self.max_depth)


class EarlyDepth(nn.Module):
    """ANIRA-E: a router on norm(e_i) picks each token's depth once, before the recurrence.

    Training draws a hard one-hot with straight-through Gumbel-softmax (forward hard, backward soft), or with
    `router_sampling="argmax"` takes the argmax with the same straight-through gradient; evaluation takes the
    argmax, so inference is deterministic. The router's output layer is the only
    parameter whose shape depends on `max_depth`, so an early model cannot be given a larger budget at
    inference: it has no logit for depths it never had.
    """

    data_dependent = True  # which tokens run, and how many iterations, are read from tensor values

    def static_in_training(self) -> bool:
        """Whether this training forward's loop is the budget's alone: the exact router gradient
        (router_gradient="full") computes all max_depth iterations of every token, masks applied densely, and reads
        no tensor value (not while held at full depth: its masks carry no gradient, and the fast path then reads
        whether they are all 1)."""
        return self.training and not self.next_only and not self.hold_full_depth

    def __init__(self, config: AniraConfig):
        super().__init__()
        self.min_depth, self.max_depth = config.min_depth, config.max_depth
        self.temperature = config.gumbel_temperature
        self.next_only = config.router_gradient == "next"
        self.sample = config.router_sampling == "gumbel"
        self.hold_full_depth = False
        self.norm = AniraRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.router = DepthRouter(config.hidden_size, config.max_depth - config.min_depth + 1)

    def plan(self, prelude_states: torch.Tensor, token_mask: torch.Tensor, max_depth: int) -> EarlyPlan:
        if max_depth != self.max_depth:
            raise ValueError(
                f"max_depth={max_depth} was requested, but an early-mode model's router only knows depths "
                f"{self.min_depth}..{self.max_depth}; the depth budget can be raised only in fixed and online modes."
            )
        logits = _at_least_float32(self.router(self.norm(prelude_states)))
        probs = logits.softmax(-1)
        if self.training and self.hold_full_depth:
            choice = F.one_hot(torch.full_like(logits[..., 0], logits.shape[-1] - 1, dtype=torch.long), logits.shape[-1])
            choice = choice.to(logits.dtype)  # no straight-through path: the router is not trained while held
        elif self.training and self.sample:
            choice = F.gumbel_softmax(logits, tau=self.temperature, hard=True)
        elif self.training:  # the inference rule forward, the tempered softmax's gradient backward
            soft = (logits / self.temperature).softmax(-1)
            hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft.dtype)
            choice = hard - soft.detach() + soft
        else:
            choice = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        return EarlyPlan(choice, probs, token_mask, self.min_depth, self.max_depth, self.next_only)


# ---------------------------------------------------------------------------------------------- online


class OnlinePlan:
    """Halting after each iteration. Subclasses change the halting rule or the compute cost."""

    def __init__(self, head: "OnlineDepth", token_mask: torch.Tensor, max_depth: int, training: bool):
        self.head, self.token_mask, self.max_depth, self.training = head, token_mask, max_depth, training
        self.min_depth, self.threshold = head.min_depth, head.threshold
        self.hold = training and head.hold_full_depth
        self.running = token_mask.float()  # a^t, the mask of the next iteration
        self.lambdas: list[torch.Tensor] = []  # lambda^t for every token (a frozen token's stays constant)
        self.ran: list[torch.Tensor] = []  # hard a^t of the iterations that ran
        self.running_hard = token_mask.bool()  # a^t > 0.5, kept beside a^t (read several times per iteration)
        self.ran_hard: torch.Tensor | None = None  # the last iteration's hard a^t
        self.any_running = bool(token_mask.any())

    def active(self, t: int) -> torch.Tensor:
        return self.running

    def computed(self, t: int) -> torch.Tensor:
        # In training, a token that halted after t - 1 is computed at t too: its mask a^t is 0 but carries the
        # straight-through gradient of that halting decision, which reads iteration t's output. Masks of later
        # iterations pass no gradient (a frozen token's halting probability stays above the threshold, so
        # a^{t+1} = a^t (1 - halt) has a zero factor either way), so those iterations need no computing.
        if self.training and self.ran_hard is not None:
            return self.running_hard | self.ran_hard
        return self.running_hard

    def any_active(self, t: int) -> bool:
        # In training one more iteration runs after the last token halted: the straight-through gradient of a
        # halting decision at d is "what iteration d + 1 would have changed", and every token must get it
        # whatever the other sequences of its batch do (gradient accumulation must equal one large batch).
        # Traced (torch.compile), no tensor value is read: every iteration of the budget runs, those after the
        # last halt over no rows (fast_path's traced iteration).
        if torch.compiler.is_compiling():
            return t <= self.max_depth
        ran_last = self.training and self.ran_hard is not None and bool(self.ran_hard.any())
        return t <= self.max_depth and (self.any_running or ran_last)

    def halt(self, t: int, lam: torch.Tensor) -> torch.Tensor:
        """Straight-through threshold: forward hard (the inference rule), backward through lambda."""
        hard = (lam >= self.threshold).to(lam.dtype)
        return hard + (lam - lam.detach()) if self.training else hard  # the bracket is exactly 0: masks stay 0/1

    def observe(self, t: int, hidden: torch.Tensor) -> None:
        running = self.running_hard
        index = None if torch.compiler.is_compiling() else running.reshape(-1).nonzero().squeeze(-1)
        if index is None:  # traced: the head over every token, the frozen ones then read 1 as below
            lam = torch.where(running, self.head.halting_prob(hidden), 1.0)
        elif index.numel() == running.numel():
            lam = self.head.halting_prob(hidden)
        else:
            # Only the running tokens' lambda is read (a frozen token's effective lambda is the one of its
            # halting iteration), so the head runs on them alone and the others read 1: halted, with no
            # straight-through path, which keeps a^{t+1} = a^t (1 - halt) at a zero factor for frozen tokens
            # (what their own, above-threshold lambda gave before; see `computed`). At width 64 the head's norm
            # is a few percent of a training step, and it does not shrink with depth unless it is gathered too.
            # (index_select and index_copy: boolean indexing's rows and masked_scatter's values, faster on CPU.)
            lam = self.head.halting_prob(hidden.reshape(-1, hidden.shape[-1]).index_select(0, index))
            ones = torch.ones(running.numel(), dtype=lam.dtype, device=lam.device)
            lam = ones.index_copy(0, index, lam).view(running.shape)
        self.lambdas.append(lam)
        self.ran.append(running.to(lam.dtype))
        self.ran_hard = running
        if t >= self.max_depth:
            halt = torch.ones_like(lam)  # iteration D always halts
        elif t < self.min_depth or self.hold:
            halt = torch.zeros_like(lam)  # held: no halting and no straight-through path to the head
        else:
            halt = self.halt(t, lam)
        self.running = self.running * (1 - halt)
        self.running_hard = self.running > 0.5
        self.any_running = torch.compiler.is_compiling() or bool(self.running_hard.any())

    def effective_lambdas(self, depths: torch.Tensor) -> torch.Tensor:
        """lambda~ [B, S, D]: 0 before min_depth, 1 at D, and after a token's halt its lambda at the halting
        iteration (its frozen state's, taken from that iteration's graph so that the gradient does not depend
        on how long the loop ran for the rest of the batch)."""
        lams = torch.stack(self.lambdas, dim=-1)
        steps = torch.arange(1, self.max_depth + 1, device=lams.device)
        last = depths.clamp(min=1).unsqueeze(-1) - 1
        lams = lams.gather(-1, torch.minimum(steps - 1, last))
        lams = torch.where(steps < self.min_depth, torch.zeros_like(lams), lams)
        return torch.where(steps == self.max_depth, torch.ones_like(lams), lams)

    def halting_distribution(self, lams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p_t = lambda_t * prod_{s<t}(1 - lambda_s), and the survival prod_{s<t}(1 - lambda_s)."""
        survive = torch.cumprod(torch.cat([torch.ones_like(lams[..., :1]), 1 - lams[..., :-1]], -1), -1)
        return lams * survive, survive

    def compute_cost(self, lams: torch.Tensor, depth_probs: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        return expected / self.max_depth

    def report(self) -> DepthReport:
        if not self.ran:  # no iteration ran: every token is padding; depths -1, distributions as if never halting
            zeros = self.token_mask.new_zeros(*self.token_mask.shape, 1, dtype=self.running.dtype)
            self.lambdas, self.ran = [zeros[..., 0]], [zeros[..., 0]]
        ran = torch.stack(self.ran, dim=-1)
        depths = _real(self.token_mask, ran.sum(-1).long())
        lams = self.effective_lambdas(depths)
        depth_probs, survive = self.halting_distribution(lams)
        expected = survive.sum(-1)  # E[d] = sum_t prod_{s<t} (1 - lambda_s)
        halting = F.pad(torch.stack(self.lambdas, -1) * ran, (0, self.max_depth - ran.shape[-1]))
        cost = self.compute_cost(lams, depth_probs, expected)
        return DepthReport(depths, depth_probs, expected, cost, halting)


class ACTPlan(OnlinePlan):
    """Graves' ACT: halt once the cumulative halting probability reaches 1 - epsilon; cost N + R.

    The forward is hard (the token's state is its state at the halting iteration, as in the other
    objectives, so the cache and the fast path are unchanged). Two gradient paths reach the halting head:
    the ponder cost, through the remainder R = 1 - sum_{t<N} lambda_t as in ACT, and the language-modelling
    loss, straight through the halting decision to the cumulative probability it thresholds (the hard
    forward replaces ACT's weighted mean of states, so without this the LM loss would not reach the head).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cumulative = torch.zeros_like(self.running)

    def halt(self, t: int, lam: torch.Tensor) -> torch.Tensor:
        self.cumulative = self.cumulative + lam * (self.running.detach() > 0.5)
        hard = (self.cumulative >= 1 - self.head.act_epsilon).to(lam.dtype)
        return hard + (self.cumulative - self.cumulative.detach()) if self.training else hard

    def report(self) -> DepthReport:
        report = super().report()
        lams = self.effective_lambdas(report.depths)
        steps = torch.arange(1, self.max_depth + 1, device=lams.device)
        n = report.depths.clamp(min=1).unsqueeze(-1)
        before = (steps < n).to(lams.dtype)
        remainder = 1 - (lams * before).sum(-1)
        depth_probs = lams * before + F.one_hot(n.squeeze(-1) - 1, self.max_depth).to(lams.dtype) * remainder.unsqueeze(-1)
        report.depth_probs = depth_probs
        report.expected_depth = (depth_probs * steps).sum(-1)
        report.compute_cost = (n.squeeze(-1) + remainder) / self.max_depth
        return report


class PonderNetPlan(OnlinePlan):
    """Threshold halting in the forward; the compute cost is KL(p || geometric prior) (PonderNet's regulariser)."""

    def compute_cost(self, lams: torch.Tensor, depth_probs: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(self.max_depth, device=lams.device, dtype=lams.dtype)
        rate = 1.0 / self.head.prior_depth
        prior = rate * (1 - rate) ** steps
        prior = prior / prior.sum()  # truncated at max_depth
        p = depth_probs.clamp_min(1e-9)
        return (p * (p.log() - prior.log())).sum(-1)


class OnlineDepth(nn.Module):
    """ANIRA-O: after every iteration each active token halts when lambda = sigmoid(w . norm(h) + b) >= threshold."""

    data_dependent = True  # which tokens run, and how many iterations, are read from tensor values

    PLANS = {"straight_through": OnlinePlan, "act": ACTPlan, "pondernet": PonderNetPlan}

    def __init__(self, config: AniraConfig):
        super().__init__()
        self.min_depth, self.max_depth = config.min_depth, config.max_depth
        self.threshold, self.act_epsilon = config.halting_threshold, config.act_epsilon
        self.prior_depth = config.pondernet_prior_depth
        self.hold_full_depth = False
        self.plan_class = self.PLANS[config.halting_objective]
        self.norm = AniraRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.halting_head = HaltingHead(config.hidden_size, 1)

    def static_in_training(self) -> bool:
        """Whether a traced training forward can hold this controller's loop: yes, as every iteration of the budget
        runs there, each over the tokens still computed, gathered through a graph symbol (fast_path's traced
        iteration), and no tensor value is read."""
        return self.training

    def halting_prob(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_at_least_float32(self.halting_head(self.norm(hidden)).squeeze(-1)))

    def plan(self, prelude_states: torch.Tensor, token_mask: torch.Tensor, max_depth: int) -> OnlinePlan:
        return self.plan_class(self, token_mask, max_depth, self.training)


DEPTH_CONTROLLERS = {"fixed": FixedDepth, "early": EarlyDepth, "online": OnlineDepth}
