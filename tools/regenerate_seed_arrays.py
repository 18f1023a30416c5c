"""Regenerate the RNG-drawn inputs of seed 003 and write cases/worked_examples.yaml.

Run once by a maintainer (needs torch); the arrays it prints are committed as data, and
`klconform check-spec` then checks the document's published numbers against them with the
extended-precision oracle. Re-running it must reproduce the committed file byte for byte.

    python tools/regenerate_seed_arrays.py > cases/worked_examples.yaml
"""

import torch


def draw(shape):
    # The seed notebook: torch.manual_seed(1); Uniform(0, 10); a1 then a2 from one stream.
    torch.manual_seed(1)
    uniform = torch.distributions.uniform.Uniform(0, 10)
    return uniform.sample(shape).tolist(), uniform.sample(shape).tolist()


def flow(values):
    if isinstance(values, list):
        return "[" + ", ".join(flow(v) for v in values) + "]"
    return repr(float(values))


def main():
    a1_2d, a2_2d = draw((5, 2))
    a1_3d, a2_3d = draw((10, 6, 4))
    print(TEMPLATE.format(a1_2d=flow(a1_2d), a2_2d=flow(a2_2d),
                          a1_3d=flow(a1_3d), a2_3d=flow(a2_3d)).rstrip())


TEMPLATE = """\
# Written by tools/regenerate_seed_arrays.py from the seed documents; the arrays of seed 003
# were drawn once with torch.manual_seed(1) and are data from now on.
description: The worked examples of the seed documents, with their published numbers.
cases:
  - id: worked-uniform-vs-9-12-4
    claims: [worked-examples, roles, reduction-batchmean]
    description: "nn.KLDivLoss(batchmean) of log(1/3, 1/3, 1/3) against (9, 12, 4)/25 is 0.0853."
    provenance:
      - {{source: seed-002, part: "In [30]-[31]: tensor(0.0853)"}}
    inputs:
      input: {{log_of: [[0.3333333333333333, 0.3333333333333333, 0.3333333333333333]]}}
      target: [[0.36, 0.48, 0.16]]
    call: {{reduction: batchmean}}
    expect:
      published: {{value: 0.0853, decimals: 4, computed_in: float32}}

  - id: worked-cross-entropy-1-5334
    claims: [worked-examples, cross-entropy-one-hot]
    description: >-
      The notebook's printed logits with labels (2, 4, 1): KL 'batchmean' against the one-hot
      target equals the cross-entropy 1.5334.
    provenance:
      - {{source: seed-002, part: "In [33]-[47]: ce_value 1.5334 == kl_loss(input_log_softmax, target_shaped)"}}
    inputs:
      input: {{log_softmax_of: [[-0.2886, -1.1185, -0.3406, -0.2233, -1.4214], [0.7044, -0.1608, 1.4654, 1.3905, 0.5196], [-0.8406, 1.6600, 1.9194, 0.8524, 0.8311]]}}
      target: {{one_hot: {{indices: [2, 4, 1], classes: 5}}}}
    call: {{reduction: batchmean}}
    expect:
      published: {{value: 1.5334, decimals: 4, computed_in: float32}}
      cross_entropy:
        logits: [[-0.2886, -1.1185, -0.3406, -0.2233, -1.4214], [0.7044, -0.1608, 1.4654, 1.3905, 0.5196], [-0.8406, 1.6600, 1.9194, 0.8524, 0.8311]]

  - id: worked-none-vector
    claims: [worked-examples, none-pointwise, none-negative-terms]
    description: "The 'none' vector of seed 002: [-0.0635, 0.0116, 0.1097, -0.0190]."
    provenance:
      - {{source: seed-002, part: "In [57]-[58]: kl_output"}}
    inputs:
      input: {{log_softmax_of: [[-0.1, 0.2, -0.4, 0.3]]}}
      target: {{softmax_of: [[-0.7, 0.1, -0.1, 0.1]]}}
    call: {{reduction: none}}
    expect:
      published: {{array: [[-0.0635, 0.0116, 0.1097, -0.0190]], decimals: 4, computed_in: float32}}

  - id: worked-none-vector-mean
    claims: [worked-examples, reduction-mean]
    description: "The mean of that vector: 0.0097."
    provenance:
      - {{source: seed-002, part: "In [58]: kl_output.mean() tensor(0.0097)"}}
    inputs:
      input: {{log_softmax_of: [[-0.1, 0.2, -0.4, 0.3]]}}
      target: {{softmax_of: [[-0.7, 0.1, -0.1, 0.1]]}}
    call: {{reduction: mean}}
    expect:
      published: {{value: 0.0097, decimals: 4, computed_in: float32}}

  - id: worked-none-vector-sum
    claims: [worked-examples, reduction-sum]
    description: "The sum of that vector: 0.0389."
    provenance:
      - {{source: seed-002, part: "In [58]: kl_output.sum() tensor(0.0389)"}}
    inputs:
      input: {{log_softmax_of: [[-0.1, 0.2, -0.4, 0.3]]}}
      target: {{softmax_of: [[-0.7, 0.1, -0.1, 0.1]]}}
    call: {{reduction: sum}}
    expect:
      published: {{value: 0.0389, decimals: 4, computed_in: float32}}

  - id: worked-one-hot-none-matrix
    claims: [worked-examples, none-pointwise, zero-target, roles]
    description: >-
      Seed 000's hand-computed 'none' matrix: -log 0.5 and -log 0.3 where p is 1, zeros
      elsewhere.
    provenance:
      - {{source: seed-000, part: "no_reduction = [[-log(0.5), 0, 0], [0, -log(0.3), 0]]"}}
    inputs:
      input: {{log_of: [[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]]}}
      target: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    call: {{reduction: none}}
    expect:
      published: {{array: [[0.6931471805599453, 0.0, 0.0], [0.0, 1.2039728043259361, 0.0]], decimals: 6, computed_in: float32}}

  - id: worked-one-hot-batchmean
    claims: [worked-examples, reduction-batchmean]
    description: "Seed 000: 'batchmean' equals no_reduction.sum(dim=1).mean(dim=0)."
    provenance:
      - {{source: seed-000, part: "test_kl_div: should_equal = no_reduction.sum(dim=1).mean(dim=0)"}}
    inputs:
      input: {{log_of: [[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]]}}
      target: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    call: {{reduction: batchmean}}
    expect:
      published: {{value: 0.9485599924429406, decimals: 6, computed_in: float32}}

  - id: worked-one-hot-mean
    claims: [worked-examples, reduction-mean]
    description: "Seed 000: 'mean' equals no_reduction.mean(dim=1).mean(dim=0)."
    provenance:
      - {{source: seed-000, part: "test_kl_div_mean: should_equal = no_reduction.mean(dim=1).mean(dim=0)"}}
    inputs:
      input: {{log_of: [[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]]}}
      target: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    call: {{reduction: mean}}
    expect:
      published: {{value: 0.3161866641476469, decimals: 6, computed_in: float32}}

  - id: worked-seed003-2d-sum
    claims: [worked-examples, reduction-sum, elementwise]
    description: "Seed 003, 2-D (5, 2) normalised over dim 0: 'sum' is 4.3808."
    provenance:
      - {{source: seed-003, part: "2D tensors, Sums: tensor(4.3808)"}}
    inputs:
      input: {{log_softmax_of: {a1_2d}, dim: 0}}
      target: {{softmax_of: {a2_2d}, dim: 0}}
    call: {{reduction: sum}}
    expect:
      published: {{value: 4.3808, decimals: 4, computed_in: float32}}

  - id: worked-seed003-2d-mean
    claims: [worked-examples, reduction-mean]
    description: "Seed 003, 2-D: 'mean' is 0.4381 (sum / 10 elements)."
    provenance:
      - {{source: seed-003, part: "2D tensors, Means: tensor(0.4381)"}}
    inputs:
      input: {{log_softmax_of: {a1_2d}, dim: 0}}
      target: {{softmax_of: {a2_2d}, dim: 0}}
    call: {{reduction: mean}}
    expect:
      published: {{value: 0.4381, decimals: 4, computed_in: float32}}

  - id: worked-seed003-2d-batchmean
    claims: [worked-examples, reduction-batchmean]
    description: "Seed 003, 2-D: 'batchmean' is 0.8762 (sum / 5)."
    provenance:
      - {{source: seed-003, part: "2D tensors, Batchmean: tensor(0.8762)"}}
    inputs:
      input: {{log_softmax_of: {a1_2d}, dim: 0}}
      target: {{softmax_of: {a2_2d}, dim: 0}}
    call: {{reduction: batchmean}}
    expect:
      published: {{value: 0.8762, decimals: 4, computed_in: float32}}

  - id: worked-seed003-3d-sum
    claims: [worked-examples, reduction-sum, elementwise]
    description: "Seed 003, 3-D (10, 6, 4) normalised over dim 0: 'sum' is 90.7882."
    provenance:
      - {{source: seed-003, part: "3D tensors, Sums: tensor(90.7882)"}}
    inputs:
      input: {{log_softmax_of: {a1_3d}, dim: 0}}
      target: {{softmax_of: {a2_3d}, dim: 0}}
    call: {{reduction: sum}}
    expect:
      published: {{value: 90.7882, decimals: 4, computed_in: float32}}

  - id: worked-seed003-3d-mean
    claims: [worked-examples, reduction-mean]
    description: "Seed 003, 3-D: 'mean' is 0.3783 (sum / 240 elements)."
    provenance:
      - {{source: seed-003, part: "3D tensors, Means: tensor(0.3783)"}}
    inputs:
      input: {{log_softmax_of: {a1_3d}, dim: 0}}
      target: {{softmax_of: {a2_3d}, dim: 0}}
    call: {{reduction: mean}}
    expect:
      published: {{value: 0.3783, decimals: 4, computed_in: float32}}

  - id: worked-seed003-3d-batchmean
    claims: [worked-examples, reduction-batchmean]
    description: "Seed 003, 3-D: 'batchmean' is 9.0788 (sum / size(0) = 10, not / 60)."
    provenance:
      - {{source: seed-003, part: "3D tensors, Batchmean: tensor(9.0788)"}}
    inputs:
      input: {{log_softmax_of: {a1_3d}, dim: 0}}
      target: {{softmax_of: {a2_3d}, dim: 0}}
    call: {{reduction: batchmean}}
    expect:
      published: {{value: 9.0788, decimals: 4, computed_in: float32}}
"""


if __name__ == "__main__":
    main()
