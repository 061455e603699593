package model

import (
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// The action tower of kind TowerMLP encodes a chunk of actions, flattened
// into one row of Config.ActionIn values (a chunk of H future steps of A
// normalised dimensions and their validity mask, see worker's action
// view), through an MLP of Config.ActionHidden widths:
//
//	h_0 = a,  h_l = act(LN_l(h_{l−1} W_lᵀ + b_l)),  w = L2Normalize(h_L W_projᵀ + b_proj).
//
// Its segments are action.fc<i> (action.ln<i> with LayerNorm) and
// action.proj, after the image and text towers' in the buffer.
func init() {
	registerTower(TowerMLP, towerKind{
		modality: ModalityAction,
		check: func(c Config) []error {
			var errs []error
			for i, h := range c.ActionHidden {
				if h <= 0 {
					errs = append(errs, fmt.Errorf("model: Config.ActionHidden[%d] = %d, want > 0", i, h))
				}
			}
			return errs
		},
		count: func(c Config, limit int) (int, bool) { return countMLPOf(c, limit, c.ActionIn, c.ActionHidden) },
		declare: func(c Config, l *layout) {
			declareMLPOf(c, l, ModalityAction, c.ActionIn, c.ActionHidden)
		},
		build32: func(c Config, cur *cursor[float32]) Tower[float32] { return newActionMLP(c, cur) },
		build64: func(c Config, cur *cursor[float64]) Tower[float64] { return newActionMLP(c, cur) },
	})
}

func newActionMLP[T gemm.Float](cfg Config, c *cursor[T]) *ImageTower[T] {
	return newMLP(cfg, c, ModalityAction, cfg.ActionIn, cfg.ActionHidden)
}
